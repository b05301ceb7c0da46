{{- define "oms.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oms.fullname" -}}
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

{{- define "oms.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A component's settings: `default` with the component's own keys merged over it.
Call with (dict "root" $ "name" $name) and read back with fromYaml.
*/}}
{{- define "oms.settings" -}}
{{- $component := index .root.Values.components .name }}
{{- toYaml (mustMergeOverwrite (deepCopy .root.Values.default) (deepCopy $component)) }}
{{- end }}

{{/* The rest take (dict "root" $ "name" $name "c" $settings). */}}

{{- define "oms.componentName" -}}
{{- printf "%s-%s" (include "oms.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oms.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oms.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "oms.labels" -}}
helm.sh/chart: {{ include "oms.chart" .root }}
{{ include "oms.selectorLabels" . }}
app.kubernetes.io/version: {{ include "oms.tag" . | quote }}
app.kubernetes.io/part-of: {{ include "oms.name" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "oms.tag" -}}
{{- .c.image.tag | default .root.Values.global.image.tag | default .root.Chart.AppVersion }}
{{- end }}

{{- define "oms.image" -}}
{{- $repository := .c.image.repository | default (printf "%s/oms-%s" .root.Values.global.image.registry .name) }}
{{- printf "%s:%s" $repository (include "oms.tag" .) }}
{{- end }}

{{- define "oms.port" -}}
{{- if .c.grpc }}{{ .c.grpc.port }}{{ else }}{{ .c.http.port }}{{ end }}
{{- end }}

{{- define "oms.portName" -}}
{{- if .c.grpc }}grpc{{ else }}http{{ end }}
{{- end }}

{{/* host:port of a component's Service, for (dict "root" $ "name" $target). */}}
{{- define "oms.address" -}}
{{- $target := index .root.Values.components .name | default dict }}
{{- if not $target.enabled }}
{{- fail (printf "grpcTargets: component %q is not enabled" .name) }}
{{- end }}
{{- $c := include "oms.settings" . | fromYaml }}
{{- printf "%s.%s.svc.%s:%s" (include "oms.componentName" .) .root.Release.Namespace .root.Values.global.clusterDomain (include "oms.port" (dict "c" $c)) }}
{{- end }}

{{- define "oms.databaseUrl" -}}
{{- /* One name in every component: the platform's settings (and the gateway's) read it. */}}
- name: OMS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .c.databaseSecret.name }}
      key: {{ .c.databaseSecret.key }}
{{- end }}

{{- define "oms.logEnv" -}}
- name: {{ .c.envPrefix }}LOG_LEVEL
  value: {{ .root.Values.global.logLevel | quote }}
- name: {{ .c.envPrefix }}LOG_FORMAT
  value: {{ .root.Values.global.logFormat | quote }}
{{- end }}
