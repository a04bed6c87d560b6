{{/* hearth.toml, rendered from the values (docs/configuration.md). Secrets are
     never in it: keys and URLs come from the Secret as HEARTH_* variables. */}}
{{- define "hearth.config" -}}
# Rendered by the Hearth chart from its values: change the values and
# `helm upgrade`; the pods roll because their checksum/config annotation changes.
{{- with .Values.defaultModel }}
default_model = {{ toJson . }}
{{- end }}

[server]
# All interfaces inside the pod: the Service and the Ingress reach it. That
# requires API keys (HEARTH_API_KEYS from the Secret); TLS ends at the Ingress.
listen = "0.0.0.0:{{ .Values.gateway.port }}"
allow_plain_http = true

[storage]
data_dir = "/var/lib/hearth"
{{- $s3 := .Values.state.external.s3 }}
{{- if include "hearth.s3" . }}
# Job files (uploads, artifacts) in a bucket every replica and worker shares; the
# keys come from the Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
objects = "s3"

[storage.s3]
bucket = {{ toJson $s3.bucket }}
{{- with $s3.prefix }}
prefix = {{ toJson . }}
{{- end }}
{{- with $s3.endpoint }}
endpoint = {{ toJson . }}
{{- end }}
{{- with $s3.region }}
region = {{ toJson . }}
{{- end }}
{{- if $s3.pathStyle }}
path_style = true
{{- end }}
{{- if $s3.allowHttp }}
allow_http = true
{{- end }}
{{- end }}

[log]
format = "json"
{{- if include "hearth.redis" . }}

[limits]
# Per-key limits counted in Redis, shared by every replica (HEARTH_REDIS_URL
# from the Secret).
backend = "redis"
{{- end }}
{{- if .Values.jobs.enabled }}

[jobs]
concurrency = {{ int .Values.jobs.concurrency }}
{{- with .Values.jobs.visionModel }}
vision_model = {{ toJson . }}
{{- end }}
{{- with .Values.jobs.codeModel }}
code_model = {{ toJson . }}
{{- end }}
{{- end }}
{{- range .Values.models }}

[[models]]
name = {{ toJson .name }}
{{- if eq .engine "embedded" }}
backend = "embedded"
path = {{ printf "/var/lib/hearth/models/%s" (include "hearth.modelFile" .) | toJson }}
{{- with .context }}
context = {{ int . }}
{{- end }}
{{- with .parallel }}
parallel = {{ int . }}
{{- end }}
{{- with .threads }}
threads = {{ int . }}
{{- end }}
{{- else }}
backend = "upstream"
{{- if eq .engine "vllm" }}
base_url = {{ printf "http://%s:%d/v1" (include "hearth.engineName" (dict "root" $ "model" .)) (int $.Values.vllm.port) | toJson }}
# vLLM serves the model under this name (--served-model-name).
upstream_model = {{ toJson .name }}
# Our own server: a request it may have received is safe to retry.
retry_unanswered = true
{{- else }}
base_url = {{ toJson .baseUrl }}
{{- with .upstreamModel }}
upstream_model = {{ toJson . }}
{{- end }}
{{- with .apiKeyEnv }}
api_key_env = {{ toJson . }}
{{- end }}
{{- end }}
{{- end }}
{{- with .maxConcurrency }}
max_concurrency = {{ int . }}
{{- end }}
{{- with .maxQueue }}
max_queue = {{ int . }}
{{- end }}
{{- with .contextLength }}
context_length = {{ int . }}
{{- end }}
{{- if .vision }}
vision = true
{{- end }}
{{- with .tags }}
tags = {{ toJson . }}
{{- end }}
{{- end }}
{{- with .Values.extraConfig }}

{{ . }}
{{- end }}
{{- end }}
