{{/* Object name: the release name, or "<release>-gke-wi-injector" unless it already contains the chart's name. */}}
{{- define "gke-wi-injector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object: deploy/'s name label plus Helm's standard labels. */}}
{{- define "gke-wi-injector.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Pods' labels and every selector, exactly as deploy/ sets them (a Deployment's selector is
immutable: the same one lets the chart take over a kustomize install's Deployment). */}}
{{- define "gke-wi-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "gke-wi-injector.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "gke-wi-injector.prefix" -}}
{{- .Values.mutation.prefix | default "gke-wi-injector.dev" -}}
{{- end -}}

{{/* The Secret holding tls.crt and tls.key. */}}
{{- define "gke-wi-injector.tlsSecret" -}}
{{- if eq .Values.certificates.mode "existingSecret" -}}
{{- required "certificates.existingSecret.name is required with certificates.mode=existingSecret" .Values.certificates.existingSecret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "gke-wi-injector.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The caBundle (base64 PEM) when the chart knows the CA; empty with cert-manager. */}}
{{- define "gke-wi-injector.caBundle" -}}
{{- if eq .Values.certificates.mode "selfSigned" -}}
{{- required "certificates.selfSigned.caCrt is required with certificates.mode=selfSigned" .Values.certificates.selfSigned.caCrt | b64enc -}}
{{- else if eq .Values.certificates.mode "existingSecret" -}}
{{- required "certificates.existingSecret.caCrt is required with certificates.mode=existingSecret (the CA that signed the Secret's tls.crt)" .Values.certificates.existingSecret.caCrt | b64enc -}}
{{- end -}}
{{- end -}}
