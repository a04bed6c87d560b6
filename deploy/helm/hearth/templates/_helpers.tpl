{{/* Names and labels (Helm's chart best practices). */}}
{{- define "hearth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hearth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hearth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "hearth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hearth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hearth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* An engine's name: RELEASE-hearth-engine-MODEL (a DNS label, 63 at most). */}}
{{- define "hearth.engineName" -}}
{{- printf "%s-engine-%s" (include "hearth.fullname" .root) (.model.name | lower | replace "." "-" | replace "_" "-") | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hearth.secretName" -}}
{{- default (printf "%s-secrets" (include "hearth.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "hearth.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "hearth.dataClaim" -}}
{{- default (printf "%s-data" (include "hearth.fullname" .)) .Values.state.persistence.existingClaim }}
{{- end }}

{{/* An embedded model's file name: `file`, else the last part of `url`. */}}
{{- define "hearth.modelFile" -}}
{{- if .file }}{{ .file }}{{ else }}{{ .url | splitList "?" | first | splitList "/" | last }}{{ end }}
{{- end }}

{{/* The pull of embedded models by an init container: only those with a `url`
     and no claim holding the files. */}}
{{- define "hearth.pulls" -}}
{{- $pulls := list }}
{{- if not .Values.gateway.modelsClaim }}
{{- range .Values.models }}
{{- if and (eq .engine "embedded") .url }}
{{- $pulls = append $pulls . }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $pulls }}
{{- end }}

{{/* Whether rate limits are counted in Redis: a redisUrl, or existingSecret
     holding `redis-url` (state.external.redis). */}}
{{- define "hearth.redis" -}}
{{- if and (eq .Values.state.mode "external") (or .Values.state.external.redisUrl .Values.state.external.redis) }}true{{ end }}
{{- end }}

{{/* Whether job files are kept in S3 (state.external.s3.bucket). */}}
{{- define "hearth.s3" -}}
{{- if and (eq .Values.state.mode "external") .Values.state.external.s3.bucket }}true{{ end }}
{{- end }}

{{/* Whether the gateway runs a model in-process (CPU-only clusters). */}}
{{- define "hearth.hasEmbedded" -}}
{{- range .Values.models }}{{ if eq .engine "embedded" }}true{{ end }}{{ end }}
{{- end }}

{{/* The checks templates alone can make (the schema makes the rest). */}}
{{- define "hearth.validate" -}}
{{- if eq .Values.state.mode "sqlite" }}
{{- if or (gt (int .Values.gateway.replicas) 1) .Values.gateway.autoscaling.enabled }}
{{- fail "state.mode=sqlite keeps the history on one volume: set gateway.replicas=1 and gateway.autoscaling.enabled=false, or state.mode=external with state.external.databaseUrl" }}
{{- end }}
{{- if .Values.jobs.worker.enabled }}
{{- fail "jobs.worker.enabled needs a shared job queue: set state.mode=external" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.state.mode "external") (not .Values.secrets.existingSecret) (not .Values.state.external.databaseUrl) }}
{{- fail "state.mode=external needs state.external.databaseUrl (or secrets.existingSecret with a database-url key)" }}
{{- end }}
{{- if and .Values.state.external.redis (not .Values.secrets.existingSecret) (not .Values.state.external.redisUrl) }}
{{- fail "state.external.redis needs state.external.redisUrl (or secrets.existingSecret with a redis-url key)" }}
{{- end }}
{{- if and .Values.jobs.worker.enabled (not (include "hearth.s3" .)) }}
{{- fail "jobs.worker.enabled needs the job files in a bucket the gateways and workers share: set state.external.s3.bucket" }}
{{- end }}
{{- if and (include "hearth.s3" .) (not .Values.secrets.existingSecret) (or (not .Values.state.external.s3.accessKeyId) (not .Values.state.external.s3.secretAccessKey)) }}
{{- fail "state.external.s3.bucket needs state.external.s3.accessKeyId and secretAccessKey (or secrets.existingSecret with s3-access-key-id and s3-secret-access-key)" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.enabled needs ingress.host (the DNS name clients use)" }}
{{- end }}
{{- $names := dict }}
{{- $engines := dict }}
{{- range .Values.models }}
{{- if eq .engine "vllm" }}
{{- $engine := include "hearth.engineName" (dict "root" $ "model" .) }}
{{- if hasKey $engines $engine }}
{{- fail (printf "models: %q and %q get the same engine name %s: rename one" (get $engines $engine) .name $engine) }}
{{- end }}
{{- $_ := set $engines $engine .name }}
{{- end }}
{{- if hasKey $names .name }}
{{- fail (printf "models: the name %q is used twice" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- if and (eq .engine "embedded") (not .url) (not .file) }}
{{- fail (printf "models: %q (engine embedded) needs url (pulled at start) or file (on gateway.modelsClaim)" .name) }}
{{- end }}
{{- if and (eq .engine "embedded") .file (not .url) (not $.Values.gateway.modelsClaim) }}
{{- fail (printf "models: %q names a file but no url: set gateway.modelsClaim to the claim holding it" .name) }}
{{- end }}
{{- end }}
{{- if and .Values.defaultModel (not (hasKey $names .Values.defaultModel)) }}
{{- fail (printf "defaultModel %q is none of models[].name" .Values.defaultModel) }}
{{- end }}
{{- end }}

{{- define "hearth.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "hearth.securityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}
