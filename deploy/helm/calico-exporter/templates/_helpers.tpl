{{/* Name of the objects: the release name, or release-chart when it lacks the chart name. */}}
{{- define "calico-exporter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "calico-exporter.labels" -}}
app.kubernetes.io/name: calico-exporter
app.kubernetes.io/part-of: calico-exporter
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: (dict "component" "cluster"). */}}
{{- define "calico-exporter.selector" -}}
app.kubernetes.io/name: calico-exporter
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "calico-exporter.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Liveness and readiness probes on the metrics port (the plain-HTTP health port with TLS). */}}
{{- define "calico-exporter.probes" -}}
{{- $port := ternary "health" "metrics" .Values.tls.enabled -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ $port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ $port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* Container ports: metrics, and health with TLS. */}}
{{- define "calico-exporter.ports" -}}
ports:
- name: metrics
  containerPort: {{ .Values.port }}
  protocol: TCP
{{- if .Values.tls.enabled }}
- name: health
  containerPort: {{ .Values.tls.healthPort }}
  protocol: TCP
{{- end }}
{{- end -}}

{{/* The TLS Secret's volume mount and volume, with TLS. */}}
{{- define "calico-exporter.tlsMount" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/calico-exporter/tls
  readOnly: true
{{- end }}
{{- end -}}
{{- define "calico-exporter.tlsVolume" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "tls.secretName is required with tls.enabled" .Values.tls.secretName }}
{{- end }}
{{- end -}}

{{/* What a ServiceMonitor endpoint needs for TLS and scraper authorization. */}}
{{- define "calico-exporter.endpointAccess" -}}
{{- if .Values.tls.enabled }}
scheme: https
{{- with .Values.tls.serviceMonitorTlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- if .Values.metricsAuth.enabled }}
bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
{{- end }}
{{- end -}}

{{/* The access settings of config.yaml (TLS files, health listener, scraper authorization). */}}
{{- define "calico-exporter.accessConfig" -}}
{{- $out := dict -}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $out "tls_cert_file" "/etc/calico-exporter/tls/tls.crt" -}}
{{- $_ := set $out "tls_key_file" "/etc/calico-exporter/tls/tls.key" -}}
{{- $_ := set $out "health_listen" (printf "0.0.0.0:%v" .Values.tls.healthPort) -}}
{{- if .Values.tls.clientCA -}}
{{- $_ := set $out "tls_client_ca_file" "/etc/calico-exporter/tls/ca.crt" -}}
{{- end -}}
{{- end -}}
{{- if .Values.metricsAuth.enabled -}}
{{- $_ := set $out "authorize_scrapers" true -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Source namespace -> merged pod labels of the probe agents, as JSON (one agent each). */}}
{{- define "calico-exporter.probeAgents" -}}
{{- $agents := dict -}}
{{- range $i, $p := .Values.probes.config.probes -}}
{{- if not (and $p.source $p.source.namespace) -}}
{{- fail (printf "probes.config.probes[%d]: source.namespace is required" $i) -}}
{{- end -}}
{{- $labels := get $agents $p.source.namespace | default dict -}}
{{- $_ := set $agents $p.source.namespace (mergeOverwrite (deepCopy $labels) ($p.source.labels | default dict)) -}}
{{- end -}}
{{- toJson $agents -}}
{{- end -}}
