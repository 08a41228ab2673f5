{{/* Names, labels and shared values of the plugbus chart. */}}

{{- define "plugbus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "plugbus.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "plugbus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "plugbus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: plugbus
{{- end -}}

{{/* Selector labels of one component (broker, hostd, webhook-sink). */}}
{{- define "plugbus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plugbus.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "plugbus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The NATS URL every component connects to: natsUrl, else the service of the
nats dependency (its own fullname rule: RELEASE-nats, or RELEASE when that
already contains "nats", or nats.fullnameOverride).
*/}}
{{- define "plugbus.natsUrl" -}}
{{- if .Values.natsUrl -}}
{{- .Values.natsUrl -}}
{{- else if .Values.nats.enabled -}}
{{- $name := "" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- $name = .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "nats" .Release.Name -}}
{{- $name = .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name = printf "%s-nats" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- printf "nats://%s:4222" $name -}}
{{- else -}}
{{- fail "set natsUrl (the NATS servers plugbus uses) or nats.enabled=true (the nats dependency)" -}}
{{- end -}}
{{- end -}}

{{- define "plugbus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "plugbus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The security context of every plugbus container: the image's nonroot user, nothing else. */}}
{{- define "plugbus.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* hostd's environment: the host's name and the bus. */}}
{{- define "plugbus.hostdEnv" -}}
- name: PLUGBUS_HOST
{{- if .Values.hostd.host }}
  value: {{ .Values.hostd.host | quote }}
{{- else }}
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
- name: NATS_URL
  value: {{ include "plugbus.natsUrl" . | quote }}
{{- end -}}
