{{- define "mcp-warden.labels" -}}
app.kubernetes.io/name: mcp-warden
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end }}

{{- /* The webhook pods carry these; the injector never mutates pods with them in its namespace. */ -}}
{{- define "mcp-warden.webhookSelector" -}}
app.kubernetes.io/name: mcp-warden
app.kubernetes.io/component: webhook
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{- /* repository@digest when image.digest is set (a pinned image), else repository:tag. */ -}}
{{- define "mcp-warden.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "mcp-warden.sidecarImage" -}}
{{ .Values.sidecar.image | default (include "mcp-warden.image" .) }}
{{- end }}

{{- /* Keep the caBundle the webhook (or cert-manager) already wrote, so an upgrade does not blank it. */ -}}
{{- define "mcp-warden.caBundle" -}}
{{- $kind := index . 0 -}}
{{- $name := index . 1 -}}
{{- $existing := lookup "admissionregistration.k8s.io/v1" $kind "" $name -}}
{{- if and $existing $existing.webhooks -}}
{{- (index $existing.webhooks 0).clientConfig.caBundle | default "" -}}
{{- end -}}
{{- end }}
