{{/* What the gateway's and the worker's containers share: the config, the
     Secret's variables, and the writable folders (the root filesystem is
     read-only). */}}
{{- define "hearth.env" -}}
- name: HEARTH_CONFIG
  value: /etc/hearth/hearth.toml
# Client keys: required by a non-loopback listen, and the worker counts the jobs'
# model calls against them.
- name: HEARTH_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "hearth.secretName" .root }}
      key: api-keys
{{- if and .gateway .root.Values.jobs.enabled .root.Values.jobs.worker.enabled }}
# Jobs run in the worker pods: this replica queues them and serves their API.
- name: HEARTH_JOBS_CONCURRENCY
  value: "0"
{{- end }}
{{- if eq .root.Values.state.mode "external" }}
# Postgres (storage.database_url).
- name: HEARTH_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "hearth.secretName" .root }}
      key: database-url
{{- if include "hearth.redis" .root }}
# Redis for the rate limits shared by every replica (limits.redis_url).
- name: HEARTH_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "hearth.secretName" .root }}
      key: redis-url
{{- end }}
{{- if include "hearth.s3" .root }}
# The bucket's keys ([storage.s3]'s default access_key_env and secret_key_env).
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "hearth.secretName" .root }}
      key: s3-access-key-id
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "hearth.secretName" .root }}
      key: s3-secret-access-key
{{- end }}
{{- end }}
{{- with .root.Values.gateway.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "hearth.mounts" -}}
- name: config
  mountPath: /etc/hearth
  readOnly: true
- name: data
  mountPath: /var/lib/hearth
- name: tmp
  mountPath: /tmp
{{- if .Values.gateway.modelsClaim }}
- name: models
  mountPath: /var/lib/hearth/models
  readOnly: true
{{- end }}
{{- end }}

{{- define "hearth.volumes" -}}
- name: config
  configMap:
    name: {{ include "hearth.fullname" . }}-config
- name: data
{{- if eq .Values.state.mode "sqlite" }}
  persistentVolumeClaim:
    claimName: {{ include "hearth.dataClaim" . }}
{{- else }}
  emptyDir:
    sizeLimit: 50Gi
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 2Gi
{{- if .Values.gateway.modelsClaim }}
- name: models
  persistentVolumeClaim:
    claimName: {{ .Values.gateway.modelsClaim }}
    readOnly: true
{{- end }}
{{- end }}
