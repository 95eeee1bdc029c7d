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

{{/* Liveness and readiness probes on the metrics port. */}}
{{- define "calico-exporter.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
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
