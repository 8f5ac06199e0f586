{{/* Standard labels on every object: svcc.baseLabels + the release instance. */}}
{{- define "svcc.labels" -}}
{{ include "svcc.baseLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "svcc.baseLabels" -}}
app.kubernetes.io/created-by: svcconform
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: svcconform
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels selecting this release's backend pods. */}}
{{- define "svcc.backendSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: backend
{{- end -}}

{{- define "svcc.backendName" -}}
{{- default (printf "%s-backend" .Release.Name) .Values.backend.name -}}
{{- end -}}

{{- define "svcc.serviceName" -}}
{{- default .Release.Name .Values.service.name -}}
{{- end -}}

{{/* Client pod name for a node: see values.yaml (clients) and fixtures.charts.client_pod_name. */}}
{{- define "svcc.clientPodName" -}}
{{- $name := printf "%s-%s" .prefix (regexReplaceAll "[^a-z0-9-]" (lower .node) "-") -}}
{{- if gt (len $name) 63 -}}
{{- $name = printf "%s-%s" (trunc 54 $name) (trunc 8 (sha256sum .node)) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* One client pod per node in .Values.clients.nodes. */}}
{{- define "svcc.clients" -}}
{{- $root := . -}}
{{- range $node := .Values.clients.nodes }}
---
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "svcc.clientPodName" (dict "prefix" $root.Values.clients.namePrefix "node" $node) }}
  labels:
    {{- include "svcc.labels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ $root.Chart.Name }}
    app.kubernetes.io/component: client
    {{- with $root.Values.clients.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    svcconform/node: {{ $node | quote }}
spec:
  nodeName: {{ $node | quote }}
  enableServiceLinks: {{ $root.Values.clients.enableServiceLinks }}
  terminationGracePeriodSeconds: {{ $root.Values.clients.terminationGracePeriodSeconds }}
  {{- if $root.Values.clients.hostNetwork }}
  hostNetwork: true
  {{- end }}
  {{- with $root.Values.clients.dnsPolicy }}
  dnsPolicy: {{ . }}
  {{- end }}
  {{- with $root.Values.clients.dnsConfig }}
  dnsConfig:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $root.Values.clients.setHostname }}
  hostname: {{ include "svcc.clientPodName" (dict "prefix" $root.Values.clients.namePrefix "node" $node) }}
  {{- end }}
  {{- with $root.Values.clients.subdomain }}
  subdomain: {{ . }}
  {{- end }}
  tolerations:
    - operator: Exists
  containers:
    - name: client
      image: {{ $root.Values.images.client | quote }}
      imagePullPolicy: {{ $root.Values.images.pullPolicy }}
      command:
        {{- toYaml $root.Values.clients.command | nindent 8 }}
{{- end }}
{{- end -}}
