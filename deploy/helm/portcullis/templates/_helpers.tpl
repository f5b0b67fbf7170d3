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

{{/* The Redis's own name: portcullis's selectors must not select it. */}}
{{- define "portcullis.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
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
{{- with include "portcullis.redis" . | fromYaml }}
{{- $cache := deepCopy ($cfg.cache | default dict) }}
{{- if hasKey $cache "redis" }}
{{- fail "config.cache.redis: set it through the chart's redis values (redis.enabled, redis.addr, redis.passwordSecret), not config" }}
{{- end }}
{{- $_ := set $cache "redis" . }}
{{- $_ := set $cfg "cache" $cache }}
{{- end }}
{{- $_ := set $cfg "policies" .Values.policies }}
{{- $_ := set $cfg "defaultPolicy" .Values.defaultPolicy }}
{{- toYaml $cfg }}
{{- end -}}

{{/* Where the store's volume is mounted: storage.params.rootdirectory, or portcullis's default. */}}
{{- define "portcullis.storePath" -}}
{{- $params := .Values.storage.params | default dict -}}
{{- $params.rootdirectory | default "/var/lib/portcullis" -}}
{{- end -}}

{{/* cache.redis from the redis values: the chart's Redis (redis.enabled, as the user portcullis
with the password of the Secret the chart makes for it) or an existing one (redis.addr), with
the password file of redis.passwordSecret; empty without either. */}}
{{- define "portcullis.redis" -}}
{{- if and .Values.redis.enabled .Values.redis.addr }}
{{- fail "redis: set redis.enabled (the chart deploys Redis) or redis.addr (an existing Redis), not both" }}
{{- end }}
{{- $addr := .Values.redis.addr }}
{{- if .Values.redis.enabled }}
{{- $addr = printf "%s:6379" (include "portcullis.redisName" .) }}
{{- end }}
{{- if $addr }}
addr: {{ $addr | quote }}
{{- if .Values.redis.enabled }}
username: portcullis
{{- end }}
{{- if or .Values.redis.enabled .Values.redis.passwordSecret.name }}
passwordFile: /etc/portcullis/redis/{{ include "portcullis.redisPasswordKey" . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The name of the chart's Redis: its Deployment, its Service (the address) and the Secret
made for it; within a DNS label's 63 characters however long the release's name. */}}
{{- define "portcullis.redisName" -}}
{{- include "portcullis.fullname" . | trunc 57 | trimSuffix "-" }}-redis
{{- end -}}

{{/* The Secret with the password (and, for the chart's Redis, the ACL file) of cache.redis:
redis.passwordSecret.name, or the one the chart makes for its Redis. */}}
{{- define "portcullis.redisSecret" -}}
{{- .Values.redis.passwordSecret.name | default (include "portcullis.redisName" .) -}}
{{- end -}}

{{/* The key of the password in that Secret: redis.passwordSecret.key in one named there,
"password" in the one the chart makes. */}}
{{- define "portcullis.redisPasswordKey" -}}
{{- if .Values.redis.passwordSecret.name }}{{ .Values.redis.passwordSecret.key }}{{ else }}password{{ end -}}
{{- end -}}
