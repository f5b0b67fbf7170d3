{{/* The name of the release's objects. */}}
{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "portcullis.credentialsSecret" -}}
{{- if .Values.credentials.create -}}
{{ include "portcullis.fullname" . }}-credentials
{{- else -}}
{{ required "credentials.existingSecret is required when credentials.create is false" .Values.credentials.existingSecret }}
{{- end -}}
{{- end -}}

{{/* portcullis.yaml: .Values.config plus the keys the chart owns. */}}
{{- define "portcullis.config" -}}
{{- range $k := list "listen" "tls" "storage" "policies" "defaultPolicy" }}
{{- if hasKey $.Values.config $k }}
{{- fail (printf "config.%s: set it through the chart's own value (port, tls, storage, policies, defaultPolicy), not config" $k) }}
{{- end }}
{{- end }}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "listen" (printf ":%d" (int .Values.port)) }}
{{- if .Values.tls.secretName }}
{{- $_ := set $cfg "tls" (dict "cert" "/etc/portcullis/tls/tls.crt" "key" "/etc/portcullis/tls/tls.key") }}
{{- end }}
{{- $_ := set $cfg "storage" .Values.storage }}
{{- $_ := set $cfg "policies" .Values.policies }}
{{- $_ := set $cfg "defaultPolicy" .Values.defaultPolicy }}
{{- toYaml $cfg }}
{{- end -}}

{{/* Where the store's volume is mounted: storage.params.rootdirectory, or portcullis's default. */}}
{{- define "portcullis.storePath" -}}
{{- $params := .Values.storage.params | default dict -}}
{{- $params.rootdirectory | default "/var/lib/portcullis" -}}
{{- end -}}
