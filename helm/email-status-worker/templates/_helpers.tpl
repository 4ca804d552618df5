{{/*
Expand the name of the chart.
*/}}
{{- define "esw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A default fully qualified app name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "esw.fullname" -}}
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

{{- define "esw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "esw.labels" -}}
helm.sh/chart: {{ include "esw.chart" . }}
{{ include "esw.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: the worker's pods only (the helm test pod carries other labels).
*/}}
{{- define "esw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "esw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "esw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "esw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "esw.image" -}}
{{- $repository := required "image.repository is required: no image is published; build the Dockerfile, push it to your registry and set image.repository (README, Deployment)" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Values read from the worker's config, with the defaults of schemas/config.v1.json.
*/}}
{{- define "esw.shards" -}}
{{- dig "kafka" "shards" 12 .Values.config | int }}
{{- end }}

{{/*
A Prometheus duration ("15s", "1m30s", "500ms") in milliseconds.
*/}}
{{- define "esw.durationMs" -}}
{{- $ms := 0 }}
{{- $unit := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 }}
{{- range (regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" (toString .) -1) }}
{{- $n := regexFind "^[0-9]+" . | int64 }}
{{- $ms = add $ms (mul $n (get $unit (trimPrefix (toString $n) .))) }}
{{- end }}
{{- $ms }}
{{- end }}

{{- define "esw.maxBodyBytes" -}}
{{- dig "http" "max_body_bytes" 1048576 .Values.config | int64 }}
{{- end }}

{{- define "esw.httpPort" -}}
{{- dig "http" "port" 8080 .Values.config | int }}
{{- end }}

{{- define "esw.graceSecs" -}}
{{- dig "shutdown" "grace_secs" 25 .Values.config | float64 }}
{{- end }}

{{- define "esw.configPath" -}}
/etc/email-status-worker/config.yaml
{{- end }}

{{/*
terminationGracePeriodSeconds: the preStop pause plus the worker's shutdown.grace_secs plus a
margin, unless set explicitly; it must leave the worker its whole grace period.
*/}}
{{- define "esw.terminationGracePeriodSeconds" -}}
{{- $grace := include "esw.graceSecs" . | float64 }}
{{- $pause := .Values.preStopSleepSeconds | int }}
{{- $needed := addf $grace $pause }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- addf $needed 10 | ceil | int }}
{{- else }}
{{- $tgps := .Values.terminationGracePeriodSeconds | int }}
{{- if le ($tgps | float64) $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than preStopSleepSeconds (%d) + config.shutdown.grace_secs (%v): otherwise Kubernetes kills the worker before it has finished its open transactions and left the consumer group" $tgps $pause $grace) }}
{{- end }}
{{- $tgps }}
{{- end }}
{{- end }}

{{/*
Every environment variable and file the config names for a secret ("*_env", "*_file" keys in
kafka.security and in each account's credentials and webhook sections, and the TLS files
ssl_cafile, ssl_certfile and ssl_keyfile of kafka.security when they lie under the chart's own
mount root, /etc/email-status-worker/: a CA bundle of the image, /etc/ssl/certs/..., needs no
volume), as a dict {"env": [...], "file": [...]} serialized to JSON. A disabled section needs
nothing (docs/configuration.md): a webhook section with enabled: false, and the credentials of an
account whose polling is off (but UniSender's, which sign its webhooks).
*/}}
{{- define "esw.secretRefs" -}}
{{- $env := list }}
{{- $file := list }}
{{- $sections := list (dig "kafka" "security" dict .Values.config) }}
{{- range $acct := (.Values.config.accounts | default list) }}
{{- $hook := get $acct "webhook" | default dict }}
{{- $hookOn := not (and (hasKey $hook "enabled") (eq (toString (get $hook "enabled")) "false")) }}
{{- $poll := get $acct "poll" | default dict }}
{{- $pollOn := not (and (hasKey $poll "enabled") (eq (toString (get $poll "enabled")) "false")) }}
{{- if or $pollOn (and $hookOn (eq (toString (get $acct "provider")) "unisender")) }}
{{- $sections = append $sections (get $acct "credentials" | default dict) }}
{{- end }}
{{- if $hookOn }}
{{- $sections = append $sections $hook }}
{{- end }}
{{- end }}
{{- range $section := $sections }}
{{- range $k, $v := $section }}
{{- if hasSuffix "_env" $k }}{{ $env = append $env $v }}{{ end }}
{{- if hasSuffix "_file" $k }}{{ $file = append $file $v }}{{ end }}
{{- if and (has $k (list "ssl_cafile" "ssl_certfile" "ssl_keyfile")) (hasPrefix "/etc/email-status-worker/" (toString $v)) }}{{ $file = append $file $v }}{{ end }}
{{- end }}
{{- end }}
{{- dict "env" ($env | uniq | sortAlpha) "file" ($file | uniq | sortAlpha) | toJson }}
{{- end }}

{{/*
Checks across values that values.schema.json cannot express. Rendering fails with a message that
says what to change.
*/}}
{{- define "esw.validate" -}}
{{- $shards := include "esw.shards" . | int }}
{{- if and .Values.autoscaling.enabled (gt (.Values.autoscaling.maxReplicas | int) $shards) }}
{{- fail (printf "autoscaling.maxReplicas (%d) is greater than config.kafka.shards (%d): a replica owns whole shards (partitions of <prefix>._raw), so replicas beyond the shard count would sit idle. Lower autoscaling.maxReplicas, or create the topics with more shards (config.kafka.shards is fixed for the life of the topics)." (.Values.autoscaling.maxReplicas | int) $shards) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (.Values.autoscaling.minReplicas | int) (.Values.autoscaling.maxReplicas | int)) }}
{{- fail (printf "autoscaling.minReplicas (%d) is greater than autoscaling.maxReplicas (%d)" (.Values.autoscaling.minReplicas | int) (.Values.autoscaling.maxReplicas | int)) }}
{{- end }}
{{- if and (not .Values.autoscaling.enabled) (gt (.Values.replicaCount | int) $shards) }}
{{- fail (printf "replicaCount (%d) is greater than config.kafka.shards (%d): a replica owns whole shards, so the extra replicas would sit idle" (.Values.replicaCount | int) $shards) }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (a PodDisruptionBudget takes one: minAvailable would win and maxUnavailable be ignored)" }}
{{- end }}
{{- $fewest := ternary (.Values.autoscaling.minReplicas | int) (.Values.replicaCount | int) .Values.autoscaling.enabled }}
{{- if and $pdb.enabled (gt $fewest 0) }}
{{- $number := list "int" "int64" "float64" }}
{{- if and (has (kindOf $pdb.minAvailable) $number) (ge ($pdb.minAvailable | int) $fewest) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) is not below the fewest replicas (%d): no pod could ever be evicted, so node drains and cluster upgrades would block. Lower it, or run more replicas" ($pdb.minAvailable | int) $fewest) }}
{{- end }}
{{- if and (has (kindOf $pdb.maxUnavailable) $number) (eq ($pdb.maxUnavailable | int) 0) }}
{{- fail "podDisruptionBudget.maxUnavailable 0: no pod could ever be evicted, so node drains and cluster upgrades would block" }}
{{- end }}
{{- /* Percentages, rounded up as Kubernetes does: minAvailable p% of n pods needs ceil(p * n / 100);
     when that is all n ("100%", or "51%" of 2) no pod could be evicted. "0%" unavailable likewise. */}}
{{- if kindIs "string" $pdb.minAvailable }}
{{- $needed := div (add (mul (trimSuffix "%" (toString $pdb.minAvailable) | atoi) $fewest) 99) 100 }}
{{- if ge ($needed | int) $fewest }}
{{- fail (printf "podDisruptionBudget.minAvailable %s of the fewest replicas (%d) is all of them (percentages round up): no pod could ever be evicted, so node drains and cluster upgrades would block. Lower it, or use maxUnavailable" $pdb.minAvailable $fewest) }}
{{- end }}
{{- end }}
{{- if and (kindIs "string" $pdb.maxUnavailable) (eq (trimSuffix "%" (toString $pdb.maxUnavailable) | atoi) 0) }}
{{- fail (printf "podDisruptionBudget.maxUnavailable %s: no pod could ever be evicted, so node drains and cluster upgrades would block" $pdb.maxUnavailable) }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if and (eq .name "PYTHONASYNCIODEBUG") (has (toString .value | lower) (list "0" "false" "no" "off")) }}
{{- fail (printf "extraEnv PYTHONASYNCIODEBUG=%q turns asyncio debug mode ON (Python enables it for any non-empty value) and slows every request down: remove the variable to keep debug mode off" (toString .value)) }}
{{- end }}
{{- end }}
{{- with .Values.serviceMonitor }}
{{- if and .enabled (gt (include "esw.durationMs" .scrapeTimeout | int64) (include "esw.durationMs" .interval | int64)) }}
{{- fail (printf "serviceMonitor.scrapeTimeout (%s) is longer than serviceMonitor.interval (%s): Prometheus refuses the scrape config" .scrapeTimeout .interval) }}
{{- end }}
{{- end }}
{{- if and .Values.secretFiles.enabled (not (or .Values.secretFiles.secretName .Values.existingSecret)) }}
{{- fail "secretFiles.enabled needs secretFiles.secretName or existingSecret: the name of a Secret you created" }}
{{- end }}
{{- range .Values.secretEnv }}
{{- if not (or .secretName $.Values.existingSecret) }}
{{- fail (printf "secretEnv %s: set its secretName, or existingSecret" .name) }}
{{- end }}
{{- end }}
{{- /* Every variable the config names must be provided by the pod. */}}
{{- $refs := include "esw.secretRefs" . | fromJson }}
{{- $envFrom := or (and .Values.existingSecret .Values.envFromExistingSecret) (gt (len .Values.extraEnvFrom) 0) }}
{{- $named := list }}
{{- range .Values.secretEnv }}{{ $named = append $named .name }}{{ end }}
{{- range .Values.extraEnv }}{{ $named = append $named .name }}{{ end }}
{{- if not $envFrom }}
{{- range $refs.env }}
{{- if not (has . $named) }}
{{- fail (printf "config names the environment variable %s for a secret, but the pod would not have it: set existingSecret (all its keys become variables, envFromExistingSecret: true), or add {name: %s, key: <key in the Secret>} to secretEnv" . .) }}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if and (has .name $refs.env) (not .valueFrom) }}
{{- fail (printf "extraEnv %s: config names it for a secret, so its value must not be written in the values (it would sit in plain text in the Deployment and in helm's release history): take it from a Secret (secretEnv, existingSecret, or valueFrom.secretKeyRef)" .name) }}
{{- end }}
{{- end }}
{{- range .Values.secretEnv }}
{{- if and .optional (has .name $refs.env) }}
{{- fail (printf "secretEnv %s is optional: true, but config names it: a pod without it fails its config check at start and restarts for ever. Drop optional, or drop the variable from config (a previous key once its rotation is over)" .name) }}
{{- end }}
{{- end }}
{{- /* Every file the config names must lie under a mounted volume. */}}
{{- $mounts := list }}
{{- if .Values.secretFiles.enabled }}{{ $mounts = append $mounts .Values.secretFiles.mountPath }}{{ end }}
{{- if .Values.kafkaTls.enabled }}{{ $mounts = append $mounts .Values.kafkaTls.mountPath }}{{ end }}
{{- range .Values.extraVolumeMounts }}{{ $mounts = append $mounts .mountPath }}{{ end }}
{{- range $path := $refs.file }}
{{- $ok := false }}
{{- range $m := $mounts }}
{{- if hasPrefix (printf "%s/" (trimSuffix "/" $m)) $path }}{{ $ok = true }}{{ end }}
{{- end }}
{{- if not $ok }}
{{- fail (printf "config names the file %s, but no volume is mounted above it: enable secretFiles (mountPath %s) or kafkaTls (mountPath %s, for Kafka's TLS files and key password), or add an extraVolumeMounts entry" $path $.Values.secretFiles.mountPath $.Values.kafkaTls.mountPath) }}
{{- end }}
{{- end }}
{{- end }}
