{{- define "drkernel.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "drkernel.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "drkernel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drkernel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "drkernel.labels" -}}
{{ include "drkernel.selectorLabels" . }}
app.kubernetes.io/part-of: drkernel
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "drkernel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "drkernel.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "drkernel.authSecretName" -}}
{{- default (printf "%s-auth" (include "drkernel.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* GPUs the pod asks for: the model's plus the evaluator's own. */}}
{{- define "drkernel.gpuCount" -}}
{{- add (int .Values.model.tensorParallelSize) (int .Values.evaluator.gpus) -}}
{{- end -}}

{{/* CUDA indices inside the pod that time kernels: by default those after the model's. */}}
{{- define "drkernel.evaluatorGpus" -}}
{{- $gpus := list -}}
{{- if .Values.evaluator.devices -}}
{{- range .Values.evaluator.devices }}{{ $gpus = append $gpus (toString .) }}{{ end -}}
{{- else -}}
{{- $first := int .Values.model.tensorParallelSize -}}
{{- range untilStep $first (add $first (int .Values.evaluator.gpus) | int) 1 }}{{ $gpus = append $gpus (toString .) }}{{ end -}}
{{- end -}}
{{- toJson $gpus -}}
{{- end -}}

{{/* The server's settings file (schema: server/config.py); `config` values win. */}}
{{- define "drkernel.config" -}}
{{- $gpus := include "drkernel.evaluatorGpus" . | fromJsonArray -}}
{{- $config := dict
  "host" "[::]"
  "port" (int .Values.server.grpcPort)
  "metrics_port" (int .Values.server.metricsPort)
  "max_sessions" (int .Values.server.maxConcurrentSessions)
  "drain_grace_s" (int .Values.server.shutdownGraceSeconds)
  "workers" (max 1 (len $gpus) | int)
  "evaluator_gpus" $gpus
-}}
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert_file" "/etc/drkernel/tls/tls.crt" "key_file" "/etc/drkernel/tls/tls.key" -}}
{{- if .Values.tls.clientAuth -}}
{{- $_ := set $tls "client_ca_file" "/etc/drkernel/tls/ca.crt" -}}
{{- end -}}
{{- $_ := set $config "tls" $tls -}}
{{- end -}}
{{- $engine := dict
  "max_model_len" (int .Values.model.maxModelLen)
  "gpu_memory_utilization" .Values.model.gpuMemoryUtilization
  "tensor_parallel_size" (int .Values.model.tensorParallelSize)
-}}
{{- $model := dict "backend" .Values.model.backend "path" .Values.model.name -}}
{{- if eq .Values.model.backend "vllm" -}}
{{- $_ := set $model "engine_args" $engine -}}
{{- end -}}
{{- $_ := set $config "model" $model -}}
{{- $_ := set $config "evaluator" (dict "device" "cuda") -}}
{{- toYaml (mustMergeOverwrite $config (deepCopy .Values.config)) -}}
{{- end -}}

{{/* A probe against the gRPC health service: native when plaintext, the image's checker under TLS. */}}
{{- define "drkernel.probe" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- if $root.Values.tls.enabled }}
exec:
  command:
    - python
    - /usr/local/bin/drkernel-healthcheck
    - --address=localhost:{{ $root.Values.server.grpcPort }}
    - --service={{ $service }}
    - --tls-ca=/etc/drkernel/tls/ca.crt
    - --server-name={{ include "drkernel.tlsServerName" $root }}
    {{- if $root.Values.tls.clientAuth }}
    - --tls-cert=/etc/drkernel/tls/tls.crt
    - --tls-key=/etc/drkernel/tls/tls.key
    {{- end }}
{{- else }}
grpc:
  port: {{ $root.Values.server.grpcPort }}
  service: {{ $service | quote }}
{{- end }}
{{- end -}}

{{- define "drkernel.tlsServerName" -}}
{{- default (printf "%s.%s.svc" (include "drkernel.fullname" .) .Release.Namespace) .Values.tls.serverName -}}
{{- end -}}
