{{/*
The chart name, or nameOverride.
*/}}
{{- define "servicelevel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, else release-chart (or just
the release name when it already contains the chart name). Kept to 63 characters for DNS.
*/}}
{{- define "servicelevel.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "servicelevel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "servicelevel.labels" -}}
helm.sh/chart: {{ include "servicelevel.chart" . }}
{{ include "servicelevel.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The labels that select the release's pods (without the component).
*/}}
{{- define "servicelevel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "servicelevel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The labels that select the server pods (not the migration Job's).
*/}}
{{- define "servicelevel.serverSelectorLabels" -}}
{{ include "servicelevel.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/*
The ServiceAccount the server pods run as.
*/}}
{{- define "servicelevel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "servicelevel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount the migration Job runs as. The chart's own account is an ordinary
resource, created after the pre-install hooks, so at install the Job cannot use it.
*/}}
{{- define "servicelevel.migrationServiceAccountName" -}}
{{- if .Values.migration.serviceAccountName }}
{{- .Values.migration.serviceAccountName }}
{{- else if not .Values.serviceAccount.create }}
{{- default "default" .Values.serviceAccount.name }}
{{- else }}
{{- "default" }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest, or repository:tag (the appVersion by default).
*/}}
{{- define "servicelevel.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The Secret holding the database URL, and whether the chart creates it.
*/}}
{{- define "servicelevel.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- printf "%s-database" (include "servicelevel.fullname" .) | trunc 253 }}
{{- end }}
{{- end }}

{{- define "servicelevel.createDatabaseSecret" -}}
{{- if and .Values.database.url (not .Values.database.existingSecret) }}true{{- end }}
{{- end }}

{{/*
The Secret holding the bootstrap admin token hash, and whether the chart creates it.
*/}}
{{- define "servicelevel.authSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- printf "%s-bootstrap-admin" (include "servicelevel.fullname" .) | trunc 253 }}
{{- end }}
{{- end }}

{{- define "servicelevel.createAuthSecret" -}}
{{- if and .Values.auth.bootstrapAdminTokenHash (not .Values.auth.existingSecret) }}true{{- end }}
{{- end }}

{{/*
The Secret the migration Job reads the database URL from: a hook Secret of its own when
the chart makes the Secret (it must exist before the Job, and is deleted once the hooks
ran), else the server's.
*/}}
{{- define "servicelevel.migrationDatabaseSecretName" -}}
{{- if include "servicelevel.createDatabaseSecret" . }}
{{- printf "%s-migrate" (include "servicelevel.databaseSecretName" .) | trunc 253 }}
{{- else }}
{{- include "servicelevel.databaseSecretName" . }}
{{- end }}
{{- end }}

{{/*
The env entry for the database URL: the server's by default, the migration Job's with
(dict "migration" true "root" .).
*/}}
{{- define "servicelevel.databaseUrlEnv" -}}
{{- $root := .root | default . -}}
- name: SERVICELEVEL_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ ternary (include "servicelevel.migrationDatabaseSecretName" $root) (include "servicelevel.databaseSecretName" $root) (eq (toString .migration) "true") }}
      key: {{ $root.Values.database.secretKey }}
{{- if ne (toString .migration) "true" }}
- name: SERVICELEVEL_READ_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "servicelevel.databaseSecretName" $root }}
      key: {{ $root.Values.database.readSecretKey }}
      optional: true
{{- end }}
{{- if eq (toString .migration) "true" }}
- name: SERVICELEVEL_MIGRATION_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "servicelevel.migrationDatabaseSecretName" $root }}
      key: {{ $root.Values.database.migrationSecretKey }}
      optional: true
{{- end }}
{{- end }}

{{/*
Checks on value combinations that the schema cannot express; called from the Deployment.
*/}}
{{- define "servicelevel.validate" -}}
{{- if and .Values.database.url .Values.database.existingSecret }}
{{- fail "database: set either url or existingSecret, not both" }}
{{- end }}
{{- if and .Values.database.readUrl (not .Values.database.url) }}
{{- fail "database: readUrl goes beside url in the chart's Secret; with existingSecret, put the replica's URL in that Secret under readSecretKey" }}
{{- end }}
{{- if and .Values.database.migrationUrl (not .Values.database.url) }}
{{- fail "database: migrationUrl goes beside url in the chart's Secrets; with existingSecret, put the direct URL in that Secret under migrationSecretKey" }}
{{- end }}
{{- if and .Values.auth.bootstrapAdminTokenHash .Values.auth.existingSecret }}
{{- fail "auth: set either bootstrapAdminTokenHash or existingSecret, not both" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with tls.crt and tls.key (and ca.crt for tls.clientCA)" }}
{{- end }}
{{- if and .Values.tls.clientCA (not .Values.tls.enabled) }}
{{- fail "tls.clientCA needs tls.enabled" }}
{{- end }}
{{- if ge (add (int .Values.server.drainTimeoutSeconds) (int .Values.preStopSleepSeconds)) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "server.drainTimeoutSeconds (%d) plus preStopSleepSeconds (%d) must stay below terminationGracePeriodSeconds (%d), or the server is killed while it drains" (int .Values.server.drainTimeoutSeconds) (int .Values.preStopSleepSeconds) (int .Values.terminationGracePeriodSeconds)) }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.server.port)) }}
{{- fail "metrics.port must differ from server.port" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not (dig "requests" "cpu" "" .Values.resources)) }}
{{- fail "autoscaling needs resources.requests.cpu: the CPU target is a percentage of it" }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.autoscaling.targetMemoryUtilizationPercentage (not (dig "requests" "memory" "" .Values.resources)) }}
{{- fail "autoscaling.targetMemoryUtilizationPercentage needs resources.requests.memory" }}
{{- end }}
{{- end }}

{{/*
A probe's timings, from one entry of .Values.probes.
*/}}
{{- define "servicelevel.probeTimings" -}}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- end }}
