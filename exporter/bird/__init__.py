"""Node mode: BGP state read straight from BIRD's control sockets (``bird.ctl``, ``bird6.ctl``).

``protocol`` speaks the BIRD 1.x control protocol, ``parse`` turns replies into the shared
``exporter.model.bgp`` objects, and ``poller.BirdPoller`` keeps the node's current NodeBGP.
"""
