"""Who may connect to the HTTP endpoint and who may scrape it.

``limits``: a connection guard under aiohttp (connection limit, header read timeout, TLS per
connection). ``tls``: the server certificate, key and client CA, reloaded when the files change.
``review``: scraper authorization with TokenReview and SubjectAccessReview, cached. The server
(``exporter.server``) wires them in; nothing here knows about metrics or Kubernetes clients
(the API call is a function the app passes in).
"""
