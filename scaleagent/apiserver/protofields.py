"""Field maps of the Kubernetes protobuf messages that typed clients send, as data.

Numbers and names follow the public `generated.proto` files of k8s.io/api and k8s.io/apimachinery; the
encoder and the decoder in `protobuf.py` both read these tables, so they cannot drift apart.

One line per field: `<number> <jsonName> <type>`.
- `<type>` is a scalar (`string int32 int64 bool bytes`), a special type (`time` = meta/v1 Time,
  `microtime`, `quantity` = resource.Quantity, `intstr` = IntOrString, `fieldsv1` = managed-fields JSON,
  `extra` = authentication ExtraValue, a list of strings), or the name of another message here.
- no suffix: a Go value field (not a pointer): Go's marshaller always writes it, even when empty, so
  the decoder drops an empty value and the encoder writes one back.
- `!`: a value field whose JSON tag has no `omitempty`: Go's JSON writes it even when zero, so the
  decoder keeps a zero string, number or boolean too (e.g. SubjectAccessReviewStatus.allowed).
- `?`: a Go pointer field: written only when set, and a zero value is kept.
- `*`: repeated.  `map<T>`: a `map[string]T`, written as entries {1 key, 2 value} sorted by key.
- json name `-`: an embedded Go struct whose fields appear inline in JSON (e.g. LocalObjectReference in
  ConfigMapKeySelector, ProbeHandler in Probe, VolumeSource in Volume).
"""

from __future__ import annotations

from typing import NamedTuple

SCALARS = frozenset({"string", "int32", "int64", "bool", "bytes"})
SPECIALS = frozenset({"time", "microtime", "quantity", "intstr", "fieldsv1", "extra"})

_SPEC = {
    # --- k8s.io/apimachinery/pkg/apis/meta/v1 ---
    "ObjectMeta": """
        1 name string
        2 generateName string
        3 namespace string
        4 selfLink string
        5 uid string
        6 resourceVersion string
        7 generation int64
        8 creationTimestamp time
        9 deletionTimestamp time?
        10 deletionGracePeriodSeconds int64?
        11 labels map<string>
        12 annotations map<string>
        13 ownerReferences OwnerReference*
        14 finalizers string*
        17 managedFields ManagedFieldsEntry*
    """,
    "OwnerReference": """
        1 kind string
        3 name string
        4 uid string
        5 apiVersion string
        6 controller bool?
        7 blockOwnerDeletion bool?
    """,
    "ManagedFieldsEntry": """
        1 manager string
        2 operation string
        3 apiVersion string
        4 time time?
        6 fieldsType string
        7 fieldsV1 fieldsv1?
        8 subresource string
    """,
    "ListMeta": """
        1 selfLink string
        2 resourceVersion string
        3 continue string
        4 remainingItemCount int64?
    """,
    "LabelSelector": """
        1 matchLabels map<string>
        2 matchExpressions LabelSelectorRequirement*
    """,
    "LabelSelectorRequirement": """
        1 key string!
        2 operator string!
        3 values string*
    """,
    "Condition": """
        1 type string!
        2 status string!
        3 observedGeneration int64
        4 lastTransitionTime time
        5 reason string!
        6 message string!
    """,
    "DeleteOptions": """
        1 gracePeriodSeconds int64?
        2 preconditions Preconditions?
        3 orphanDependents bool?
        4 propagationPolicy string?
        5 dryRun string*
        6 ignoreStoreReadErrorWithClusterBreakingPotential bool?
    """,
    "Preconditions": """
        1 uid string?
        2 resourceVersion string?
    """,
    # --- k8s.io/api/core/v1 ---
    "Namespace": """
        1 metadata ObjectMeta
        2 spec NamespaceSpec
        3 status NamespaceStatus
    """,
    "NamespaceSpec": """
        1 finalizers string*
    """,
    "NamespaceStatus": """
        1 phase string
        2 conditions NamespaceCondition*
    """,
    "NamespaceCondition": """
        1 type string!
        2 status string!
        4 lastTransitionTime time
        5 reason string
        6 message string
    """,
    "ConfigMap": """
        1 metadata ObjectMeta
        2 data map<string>
        3 binaryData map<bytes>
        4 immutable bool?
    """,
    "Secret": """
        1 metadata ObjectMeta
        2 data map<bytes>
        3 type string
        4 stringData map<string>
        5 immutable bool?
    """,
    "ServiceAccount": """
        1 metadata ObjectMeta
        2 secrets ObjectReference*
        3 imagePullSecrets LocalObjectReference*
        4 automountServiceAccountToken bool?
    """,
    "ObjectReference": """
        1 kind string
        2 namespace string
        3 name string
        4 uid string
        5 apiVersion string
        6 resourceVersion string
        7 fieldPath string
    """,
    "LocalObjectReference": """
        1 name string
    """,
    "Service": """
        1 metadata ObjectMeta
        2 spec ServiceSpec
        3 status ServiceStatus
    """,
    "ServiceSpec": """
        1 ports ServicePort*
        2 selector map<string>
        3 clusterIP string
        4 type string
        5 externalIPs string*
        7 sessionAffinity string
        8 loadBalancerIP string
        9 loadBalancerSourceRanges string*
        10 externalName string
        11 externalTrafficPolicy string
        12 healthCheckNodePort int32
        13 publishNotReadyAddresses bool
        14 sessionAffinityConfig SessionAffinityConfig?
        17 ipFamilyPolicy string?
        18 clusterIPs string*
        19 ipFamilies string*
        20 allocateLoadBalancerNodePorts bool?
        21 loadBalancerClass string?
        22 internalTrafficPolicy string?
        23 trafficDistribution string?
    """,
    "ServicePort": """
        1 name string
        2 protocol string
        3 port int32!
        4 targetPort intstr
        5 nodePort int32
        6 appProtocol string?
    """,
    "SessionAffinityConfig": """
        1 clientIP ClientIPConfig?
    """,
    "ClientIPConfig": """
        1 timeoutSeconds int32?
    """,
    "ServiceStatus": """
        1 loadBalancer LoadBalancerStatus
        2 conditions Condition*
    """,
    "LoadBalancerStatus": """
        1 ingress LoadBalancerIngress*
    """,
    "LoadBalancerIngress": """
        1 ip string
        2 hostname string
        3 ipMode string?
        4 ports PortStatus*
    """,
    "PortStatus": """
        1 port int32
        2 protocol string
        3 error string?
    """,
    "ResourceQuota": """
        1 metadata ObjectMeta
        2 spec ResourceQuotaSpec
        3 status ResourceQuotaStatus
    """,
    "ResourceQuotaSpec": """
        1 hard map<quantity>
        2 scopes string*
        3 scopeSelector ScopeSelector?
    """,
    "ScopeSelector": """
        1 matchExpressions ScopedResourceSelectorRequirement*
    """,
    "ScopedResourceSelectorRequirement": """
        1 scopeName string
        2 operator string
        3 values string*
    """,
    "ResourceQuotaStatus": """
        1 hard map<quantity>
        2 used map<quantity>
    """,
    "LimitRange": """
        1 metadata ObjectMeta
        2 spec LimitRangeSpec
    """,
    "LimitRangeSpec": """
        1 limits LimitRangeItem*
    """,
    "LimitRangeItem": """
        1 type string
        2 max map<quantity>
        3 min map<quantity>
        4 default map<quantity>
        5 defaultRequest map<quantity>
        6 maxLimitRequestRatio map<quantity>
    """,
    "Event": """
        1 metadata ObjectMeta
        2 involvedObject ObjectReference
        3 reason string
        4 message string
        5 source EventSource
        6 firstTimestamp time
        7 lastTimestamp time
        8 count int32
        9 type string
        10 eventTime microtime
        11 series EventSeries?
        12 action string
        13 related ObjectReference?
        14 reportingComponent string
        15 reportingInstance string
    """,
    "EventSource": """
        1 component string
        2 host string
    """,
    "EventSeries": """
        1 count int32
        2 lastObservedTime microtime
    """,
    "PodTemplateSpec": """
        1 metadata ObjectMeta
        2 spec PodSpec
    """,
    "PodSpec": """
        1 volumes Volume*
        2 containers Container*
        3 restartPolicy string
        4 terminationGracePeriodSeconds int64?
        5 activeDeadlineSeconds int64?
        6 dnsPolicy string
        7 nodeSelector map<string>
        8 serviceAccountName string
        9 serviceAccount string
        10 nodeName string
        11 hostNetwork bool
        12 hostPID bool
        13 hostIPC bool
        14 securityContext PodSecurityContext?
        15 imagePullSecrets LocalObjectReference*
        16 hostname string
        17 subdomain string
        18 affinity Affinity?
        19 schedulerName string
        20 initContainers Container*
        21 automountServiceAccountToken bool?
        22 tolerations Toleration*
        23 hostAliases HostAlias*
        24 priorityClassName string
        25 priority int32?
        26 dnsConfig PodDNSConfig?
        27 shareProcessNamespace bool?
        28 readinessGates PodReadinessGate*
        29 runtimeClassName string?
        30 enableServiceLinks bool?
        31 preemptionPolicy string?
        32 overhead map<quantity>
        33 topologySpreadConstraints TopologySpreadConstraint*
        34 ephemeralContainers EphemeralContainer*
        35 setHostnameAsFQDN bool?
        36 os PodOS?
        37 hostUsers bool?
        38 schedulingGates PodSchedulingGate*
        40 resources ResourceRequirements?
    """,
    "Container": """
        1 name string!
        2 image string
        3 command string*
        4 args string*
        5 workingDir string
        6 ports ContainerPort*
        7 env EnvVar*
        8 resources ResourceRequirements
        9 volumeMounts VolumeMount*
        10 livenessProbe Probe?
        11 readinessProbe Probe?
        12 lifecycle Lifecycle?
        13 terminationMessagePath string
        14 imagePullPolicy string
        15 securityContext SecurityContext?
        16 stdin bool
        17 stdinOnce bool
        18 tty bool
        19 envFrom EnvFromSource*
        20 terminationMessagePolicy string
        21 volumeDevices VolumeDevice*
        22 startupProbe Probe?
        23 resizePolicy ContainerResizePolicy*
        24 restartPolicy string?
    """,
    "EphemeralContainer": """
        1 - Container
        2 targetContainerName string
    """,
    "ContainerResizePolicy": """
        1 resourceName string
        2 restartPolicy string
    """,
    "ContainerPort": """
        1 name string
        2 hostPort int32
        3 containerPort int32!
        4 protocol string
        5 hostIP string
    """,
    "EnvVar": """
        1 name string!
        2 value string
        3 valueFrom EnvVarSource?
    """,
    "EnvVarSource": """
        1 fieldRef ObjectFieldSelector?
        2 resourceFieldRef ResourceFieldSelector?
        3 configMapKeyRef ConfigMapKeySelector?
        4 secretKeyRef SecretKeySelector?
    """,
    "ObjectFieldSelector": """
        1 apiVersion string
        2 fieldPath string
    """,
    "ResourceFieldSelector": """
        1 containerName string
        2 resource string
        3 divisor quantity
    """,
    "ConfigMapKeySelector": """
        1 - LocalObjectReference
        2 key string
        3 optional bool?
    """,
    "SecretKeySelector": """
        1 - LocalObjectReference
        2 key string
        3 optional bool?
    """,
    "EnvFromSource": """
        1 prefix string
        2 configMapRef ConfigMapEnvSource?
        3 secretRef SecretEnvSource?
    """,
    "ConfigMapEnvSource": """
        1 - LocalObjectReference
        2 optional bool?
    """,
    "SecretEnvSource": """
        1 - LocalObjectReference
        2 optional bool?
    """,
    "ResourceRequirements": """
        1 limits map<quantity>
        2 requests map<quantity>
        3 claims ResourceClaim*
    """,
    "ResourceClaim": """
        1 name string
        2 request string
    """,
    "VolumeMount": """
        1 name string!
        2 readOnly bool
        3 mountPath string!
        4 subPath string
        5 mountPropagation string?
        6 subPathExpr string
        7 recursiveReadOnly string?
    """,
    "VolumeDevice": """
        1 name string
        2 devicePath string
    """,
    "Probe": """
        1 - ProbeHandler
        2 initialDelaySeconds int32
        3 timeoutSeconds int32
        4 periodSeconds int32
        5 successThreshold int32
        6 failureThreshold int32
        7 terminationGracePeriodSeconds int64?
    """,
    "ProbeHandler": """
        1 exec ExecAction?
        2 httpGet HTTPGetAction?
        3 tcpSocket TCPSocketAction?
        4 grpc GRPCAction?
    """,
    "ExecAction": """
        1 command string*
    """,
    "HTTPGetAction": """
        1 path string
        2 port intstr
        3 host string
        4 scheme string
        5 httpHeaders HTTPHeader*
    """,
    "HTTPHeader": """
        1 name string
        2 value string
    """,
    "TCPSocketAction": """
        1 port intstr
        2 host string
    """,
    "GRPCAction": """
        1 port int32
        2 service string?
    """,
    "Lifecycle": """
        1 postStart LifecycleHandler?
        2 preStop LifecycleHandler?
    """,
    "LifecycleHandler": """
        1 exec ExecAction?
        2 httpGet HTTPGetAction?
        3 tcpSocket TCPSocketAction?
        4 sleep SleepAction?
    """,
    "SleepAction": """
        1 seconds int64
    """,
    "SecurityContext": """
        1 capabilities Capabilities?
        2 privileged bool?
        3 seLinuxOptions SELinuxOptions?
        4 runAsUser int64?
        5 runAsNonRoot bool?
        6 readOnlyRootFilesystem bool?
        7 allowPrivilegeEscalation bool?
        8 runAsGroup int64?
        9 procMount string?
        10 windowsOptions WindowsSecurityContextOptions?
        11 seccompProfile SeccompProfile?
        12 appArmorProfile AppArmorProfile?
    """,
    "Capabilities": """
        1 add string*
        2 drop string*
    """,
    "SELinuxOptions": """
        1 user string
        2 role string
        3 type string
        4 level string
    """,
    "WindowsSecurityContextOptions": """
        1 gmsaCredentialSpecName string?
        2 gmsaCredentialSpec string?
        3 runAsUserName string?
        4 hostProcess bool?
    """,
    "SeccompProfile": """
        1 type string
        2 localhostProfile string?
    """,
    "AppArmorProfile": """
        1 type string
        2 localhostProfile string?
    """,
    "PodSecurityContext": """
        1 seLinuxOptions SELinuxOptions?
        2 runAsUser int64?
        3 runAsNonRoot bool?
        4 supplementalGroups int64*
        5 fsGroup int64?
        6 runAsGroup int64?
        7 sysctls Sysctl*
        8 windowsOptions WindowsSecurityContextOptions?
        9 fsGroupChangePolicy string?
        10 seccompProfile SeccompProfile?
        11 appArmorProfile AppArmorProfile?
    """,
    "Sysctl": """
        1 name string
        2 value string
    """,
    "PodOS": """
        1 name string
    """,
    "PodSchedulingGate": """
        1 name string
    """,
    "PodReadinessGate": """
        1 conditionType string
    """,
    "Toleration": """
        1 key string
        2 operator string
        3 value string
        4 effect string
        5 tolerationSeconds int64?
    """,
    "HostAlias": """
        1 ip string
        2 hostnames string*
    """,
    "PodDNSConfig": """
        1 nameservers string*
        2 searches string*
        3 options PodDNSConfigOption*
    """,
    "PodDNSConfigOption": """
        1 name string
        2 value string?
    """,
    "Affinity": """
        1 nodeAffinity NodeAffinity?
        2 podAffinity PodAffinity?
        3 podAntiAffinity PodAffinity?
    """,
    "NodeAffinity": """
        1 requiredDuringSchedulingIgnoredDuringExecution NodeSelector?
        2 preferredDuringSchedulingIgnoredDuringExecution PreferredSchedulingTerm*
    """,
    "NodeSelector": """
        1 nodeSelectorTerms NodeSelectorTerm*
    """,
    "NodeSelectorTerm": """
        1 matchExpressions NodeSelectorRequirement*
        2 matchFields NodeSelectorRequirement*
    """,
    "NodeSelectorRequirement": """
        1 key string!
        2 operator string!
        3 values string*
    """,
    "PreferredSchedulingTerm": """
        1 weight int32
        2 preference NodeSelectorTerm
    """,
    # PodAntiAffinity has the same fields as PodAffinity.
    "PodAffinity": """
        1 requiredDuringSchedulingIgnoredDuringExecution PodAffinityTerm*
        2 preferredDuringSchedulingIgnoredDuringExecution WeightedPodAffinityTerm*
    """,
    "PodAffinityTerm": """
        1 labelSelector LabelSelector?
        2 namespaces string*
        3 topologyKey string
        4 namespaceSelector LabelSelector?
        5 matchLabelKeys string*
        6 mismatchLabelKeys string*
    """,
    "WeightedPodAffinityTerm": """
        1 weight int32
        2 podAffinityTerm PodAffinityTerm
    """,
    "TopologySpreadConstraint": """
        1 maxSkew int32
        2 topologyKey string
        3 whenUnsatisfiable string
        4 labelSelector LabelSelector?
        5 minDomains int32?
        6 nodeAffinityPolicy string?
        7 nodeTaintsPolicy string?
        8 matchLabelKeys string*
    """,
    "Volume": """
        1 name string!
        2 - VolumeSource
    """,
    "VolumeSource": """
        1 hostPath HostPathVolumeSource?
        2 emptyDir EmptyDirVolumeSource?
        6 secret SecretVolumeSource?
        7 nfs NFSVolumeSource?
        10 persistentVolumeClaim PersistentVolumeClaimVolumeSource?
        16 downwardAPI DownwardAPIVolumeSource?
        19 configMap ConfigMapVolumeSource?
        26 projected ProjectedVolumeSource?
        28 csi CSIVolumeSource?
        30 image ImageVolumeSource?
    """,
    "HostPathVolumeSource": """
        1 path string
        2 type string?
    """,
    "EmptyDirVolumeSource": """
        1 medium string
        2 sizeLimit quantity?
    """,
    "SecretVolumeSource": """
        1 secretName string
        2 items KeyToPath*
        3 defaultMode int32?
        4 optional bool?
    """,
    "KeyToPath": """
        1 key string!
        2 path string!
        3 mode int32?
    """,
    "NFSVolumeSource": """
        1 server string
        2 path string
        3 readOnly bool
    """,
    "PersistentVolumeClaimVolumeSource": """
        1 claimName string
        2 readOnly bool
    """,
    "DownwardAPIVolumeSource": """
        1 items DownwardAPIVolumeFile*
        2 defaultMode int32?
    """,
    "DownwardAPIVolumeFile": """
        1 path string
        2 fieldRef ObjectFieldSelector?
        3 resourceFieldRef ResourceFieldSelector?
        4 mode int32?
    """,
    "ConfigMapVolumeSource": """
        1 - LocalObjectReference
        2 items KeyToPath*
        3 defaultMode int32?
        4 optional bool?
    """,
    "ProjectedVolumeSource": """
        1 sources VolumeProjection*
        2 defaultMode int32?
    """,
    "VolumeProjection": """
        1 secret SecretProjection?
        2 downwardAPI DownwardAPIProjection?
        3 configMap ConfigMapProjection?
        4 serviceAccountToken ServiceAccountTokenProjection?
    """,
    "SecretProjection": """
        1 - LocalObjectReference
        2 items KeyToPath*
        4 optional bool?
    """,
    "ConfigMapProjection": """
        1 - LocalObjectReference
        2 items KeyToPath*
        4 optional bool?
    """,
    "DownwardAPIProjection": """
        1 items DownwardAPIVolumeFile*
    """,
    "ServiceAccountTokenProjection": """
        1 audience string
        2 expirationSeconds int64?
        3 path string
    """,
    "CSIVolumeSource": """
        1 driver string
        2 readOnly bool?
        3 fsType string?
        4 volumeAttributes map<string>
        5 nodePublishSecretRef LocalObjectReference?
    """,
    "ImageVolumeSource": """
        1 reference string
        2 pullPolicy string
    """,
    # --- k8s.io/api/apps/v1 ---
    "Deployment": """
        1 metadata ObjectMeta
        2 spec DeploymentSpec
        3 status DeploymentStatus
    """,
    "DeploymentSpec": """
        1 replicas int32?
        2 selector LabelSelector?
        3 template PodTemplateSpec
        4 strategy DeploymentStrategy
        5 minReadySeconds int32
        6 revisionHistoryLimit int32?
        7 paused bool
        9 progressDeadlineSeconds int32?
    """,
    "DeploymentStrategy": """
        1 type string
        2 rollingUpdate RollingUpdateDeployment?
    """,
    "RollingUpdateDeployment": """
        1 maxUnavailable intstr?
        2 maxSurge intstr?
    """,
    "DeploymentStatus": """
        1 observedGeneration int64
        2 replicas int32
        3 updatedReplicas int32
        4 availableReplicas int32
        5 unavailableReplicas int32
        6 conditions DeploymentCondition*
        7 readyReplicas int32
        8 collisionCount int32?
    """,
    "DeploymentCondition": """
        1 type string!
        2 status string!
        4 reason string
        5 message string
        6 lastUpdateTime time
        7 lastTransitionTime time
    """,
    # --- k8s.io/api/batch/v1 ---
    "Job": """
        1 metadata ObjectMeta
        2 spec JobSpec
        3 status JobStatus
    """,
    "JobSpec": """
        1 parallelism int32?
        2 completions int32?
        3 activeDeadlineSeconds int64?
        4 selector LabelSelector?
        5 manualSelector bool?
        6 template PodTemplateSpec
        7 backoffLimit int32?
        8 ttlSecondsAfterFinished int32?
        9 completionMode string?
        10 suspend bool?
        12 backoffLimitPerIndex int32?
        13 maxFailedIndexes int32?
        14 podReplacementPolicy string?
        15 managedBy string?
    """,
    "JobStatus": """
        1 conditions JobCondition*
        2 startTime time?
        3 completionTime time?
        4 active int32
        5 succeeded int32
        6 failed int32
        7 completedIndexes string
        8 uncountedTerminatedPods UncountedTerminatedPods?
        9 ready int32?
        10 failedIndexes string?
        11 terminating int32?
    """,
    "JobCondition": """
        1 type string!
        2 status string!
        3 lastProbeTime time
        4 lastTransitionTime time
        5 reason string
        6 message string
    """,
    "UncountedTerminatedPods": """
        1 succeeded string*
        2 failed string*
    """,
    # --- k8s.io/api/batch/v1 CronJob ---
    "CronJob": """
        1 metadata ObjectMeta
        2 spec CronJobSpec
        3 status CronJobStatus
    """,
    "CronJobSpec": """
        1 schedule string
        2 startingDeadlineSeconds int64?
        3 concurrencyPolicy string
        4 suspend bool?
        5 jobTemplate JobTemplateSpec
        6 successfulJobsHistoryLimit int32?
        7 failedJobsHistoryLimit int32?
        8 timeZone string?
    """,
    "JobTemplateSpec": """
        1 metadata ObjectMeta
        2 spec JobSpec
    """,
    "CronJobStatus": """
        1 active ObjectReference*
        4 lastScheduleTime time?
        5 lastSuccessfulTime time?
    """,
    # --- k8s.io/api/policy/v1 ---
    "PodDisruptionBudget": """
        1 metadata ObjectMeta
        2 spec PodDisruptionBudgetSpec
        3 status PodDisruptionBudgetStatus
    """,
    "PodDisruptionBudgetSpec": """
        1 minAvailable intstr?
        2 selector LabelSelector?
        3 maxUnavailable intstr?
        4 unhealthyPodEvictionPolicy string?
    """,
    "PodDisruptionBudgetStatus": """
        1 observedGeneration int64
        2 disruptedPods map<time>
        3 disruptionsAllowed int32!
        4 currentHealthy int32!
        5 desiredHealthy int32!
        6 expectedPods int32!
        7 conditions Condition*
    """,
    # --- k8s.io/api/scheduling/v1 ---
    "PriorityClass": """
        1 metadata ObjectMeta
        2 value int32!
        3 globalDefault bool
        4 description string
        5 preemptionPolicy string?
    """,
    # --- k8s.io/api/networking/v1 ---
    "Ingress": """
        1 metadata ObjectMeta
        2 spec IngressSpec
        3 status IngressStatus
    """,
    "IngressSpec": """
        1 defaultBackend IngressBackend?
        2 tls IngressTLS*
        3 rules IngressRule*
        4 ingressClassName string?
    """,
    "IngressBackend": """
        3 resource TypedLocalObjectReference?
        4 service IngressServiceBackend?
    """,
    "TypedLocalObjectReference": """
        1 apiGroup string?
        2 kind string!
        3 name string!
    """,
    "IngressServiceBackend": """
        1 name string!
        2 port ServiceBackendPort
    """,
    "ServiceBackendPort": """
        1 name string
        2 number int32
    """,
    "IngressTLS": """
        1 hosts string*
        2 secretName string
    """,
    "IngressRule": """
        1 host string
        2 - IngressRuleValue
    """,
    "IngressRuleValue": """
        1 http HTTPIngressRuleValue?
    """,
    "HTTPIngressRuleValue": """
        1 paths HTTPIngressPath*
    """,
    "HTTPIngressPath": """
        1 path string
        2 backend IngressBackend
        3 pathType string?
    """,
    "IngressStatus": """
        1 loadBalancer IngressLoadBalancerStatus
    """,
    "IngressLoadBalancerStatus": """
        1 ingress IngressLoadBalancerIngress*
    """,
    "IngressLoadBalancerIngress": """
        1 ip string
        2 hostname string
        4 ports IngressPortStatus*
    """,
    "IngressPortStatus": """
        1 port int32!
        2 protocol string!
        3 error string?
    """,
    # --- k8s.io/api/rbac/v1 ---
    "Role": """
        1 metadata ObjectMeta
        2 rules PolicyRule*
    """,
    "ClusterRole": """
        1 metadata ObjectMeta
        2 rules PolicyRule*
        3 aggregationRule AggregationRule?
    """,
    "PolicyRule": """
        1 verbs string*
        2 apiGroups string*
        3 resources string*
        4 resourceNames string*
        5 nonResourceURLs string*
    """,
    "AggregationRule": """
        1 clusterRoleSelectors LabelSelector*
    """,
    # ClusterRoleBinding has the same fields as RoleBinding.
    "RoleBinding": """
        1 metadata ObjectMeta
        2 subjects Subject*
        3 roleRef RoleRef
    """,
    "Subject": """
        1 kind string!
        2 apiGroup string
        3 name string!
        4 namespace string
    """,
    "RoleRef": """
        1 apiGroup string!
        2 kind string!
        3 name string!
    """,
    # --- k8s.io/api/coordination/v1 ---
    "Lease": """
        1 metadata ObjectMeta
        2 spec LeaseSpec
    """,
    "LeaseSpec": """
        1 holderIdentity string?
        2 leaseDurationSeconds int32?
        3 acquireTime microtime?
        4 renewTime microtime?
        5 leaseTransitions int32?
        6 strategy string?
        7 preferredHolder string?
    """,
    # --- k8s.io/api/events/v1 ---
    "EventsV1Event": """
        1 metadata ObjectMeta
        2 eventTime microtime
        3 series EventSeries?
        4 reportingController string
        5 reportingInstance string
        6 action string
        7 reason string
        8 regarding ObjectReference
        9 related ObjectReference?
        10 note string
        11 type string
        12 deprecatedSource EventSource
        13 deprecatedFirstTimestamp time
        14 deprecatedLastTimestamp time
        15 deprecatedCount int32
    """,
    # --- k8s.io/api/authentication/v1 ---
    "TokenRequest": """
        1 metadata ObjectMeta
        2 spec TokenRequestSpec
        3 status TokenRequestStatus
    """,
    "TokenRequestSpec": """
        1 audiences string*
        3 boundObjectRef BoundObjectReference?
        4 expirationSeconds int64?
    """,
    "BoundObjectReference": """
        1 kind string
        2 apiVersion string
        3 name string
        4 uid string
    """,
    "TokenRequestStatus": """
        1 token string!
        2 expirationTimestamp time
    """,
    "TokenReview": """
        1 metadata ObjectMeta
        2 spec TokenReviewSpec
        3 status TokenReviewStatus
    """,
    "TokenReviewSpec": """
        1 token string
        2 audiences string*
    """,
    "TokenReviewStatus": """
        1 authenticated bool
        2 user UserInfo
        3 error string
        4 audiences string*
    """,
    "UserInfo": """
        1 username string
        2 uid string
        3 groups string*
        4 extra map<extra>
    """,
    "SelfSubjectReview": """
        1 metadata ObjectMeta
        2 status SelfSubjectReviewStatus
    """,
    "SelfSubjectReviewStatus": """
        1 userInfo UserInfo
    """,
    # --- k8s.io/api/authorization/v1 ---
    "SubjectAccessReview": """
        1 metadata ObjectMeta
        2 spec SubjectAccessReviewSpec
        3 status SubjectAccessReviewStatus
    """,
    "SubjectAccessReviewSpec": """
        1 resourceAttributes ResourceAttributes?
        2 nonResourceAttributes NonResourceAttributes?
        3 user string
        4 groups string*
        5 extra map<extra>
        6 uid string
    """,
    "SelfSubjectAccessReview": """
        1 metadata ObjectMeta
        2 spec SelfSubjectAccessReviewSpec
        3 status SubjectAccessReviewStatus
    """,
    "SelfSubjectAccessReviewSpec": """
        1 resourceAttributes ResourceAttributes?
        2 nonResourceAttributes NonResourceAttributes?
    """,
    "ResourceAttributes": """
        1 namespace string
        2 verb string
        3 group string
        4 version string
        5 resource string
        6 subresource string
        7 name string
        8 fieldSelector FieldSelectorAttributes?
        9 labelSelector LabelSelectorAttributes?
    """,
    "FieldSelectorAttributes": """
        1 rawSelector string
        2 requirements FieldSelectorRequirement*
    """,
    "FieldSelectorRequirement": """
        1 key string
        2 operator string
        3 values string*
    """,
    "LabelSelectorAttributes": """
        1 rawSelector string
        2 requirements LabelSelectorRequirement*
    """,
    "NonResourceAttributes": """
        1 path string
        2 verb string
    """,
    "SubjectAccessReviewStatus": """
        1 allowed bool!
        2 reason string
        3 evaluationError string
        4 denied bool
    """,
    "SelfSubjectRulesReview": """
        1 metadata ObjectMeta
        2 spec SelfSubjectRulesReviewSpec
        3 status SubjectRulesReviewStatus
    """,
    "SelfSubjectRulesReviewSpec": """
        1 namespace string
    """,
    "SubjectRulesReviewStatus": """
        1 resourceRules ResourceRule*
        2 nonResourceRules NonResourceRule*
        3 incomplete bool!
        4 evaluationError string
    """,
    "ResourceRule": """
        1 verbs string*
        2 apiGroups string*
        3 resources string*
        4 resourceNames string*
    """,
    "NonResourceRule": """
        1 verbs string*
        2 nonResourceURLs string*
    """,
}

# (apiVersion, kind) of every top-level object a typed client may send → message name above.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Secret"): "Secret",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("v1", "Service"): "Service",
    ("v1", "ResourceQuota"): "ResourceQuota",
    ("v1", "LimitRange"): "LimitRange",
    ("v1", "Event"): "Event",
    ("apps/v1", "Deployment"): "Deployment",
    ("batch/v1", "Job"): "Job",
    ("batch/v1", "CronJob"): "CronJob",
    ("policy/v1", "PodDisruptionBudget"): "PodDisruptionBudget",
    ("scheduling.k8s.io/v1", "PriorityClass"): "PriorityClass",
    ("networking.k8s.io/v1", "Ingress"): "Ingress",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "RoleBinding",
    ("coordination.k8s.io/v1", "Lease"): "Lease",
    ("events.k8s.io/v1", "Event"): "EventsV1Event",
    ("authentication.k8s.io/v1", "TokenRequest"): "TokenRequest",
    ("authentication.k8s.io/v1", "TokenReview"): "TokenReview",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "SelfSubjectReview",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "SubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "SelfSubjectRulesReview",
}

# DeleteOptions is sent under the group version of the client that deletes (v1, apps/v1, …).
ANY_VERSION_KINDS = {"DeleteOptions": "DeleteOptions"}


class Field(NamedTuple):
    number: int
    name: str  # JSON name; "-" for an inline (embedded) message
    type: str  # scalar, special or message name
    mode: str  # "" value, "!" value always in JSON, "?" pointer, "*" repeated, "map"


def _parse(spec: dict[str, str]) -> dict[str, tuple[Field, ...]]:
    messages: dict[str, tuple[Field, ...]] = {}
    for message, text in spec.items():
        fields = []
        for line in text.strip().splitlines():
            number, name, type_ = line.split()
            mode = ""
            if type_.startswith("map<") and type_.endswith(">"):
                type_, mode = type_[4:-1], "map"
            elif type_[-1] in "?*!":
                type_, mode = type_[:-1], type_[-1]
            fields.append(Field(int(number), name, type_, mode))
        fields.sort(key=lambda f: f.number)
        messages[message] = tuple(fields)
    for message, fields in messages.items():
        for f in fields:
            known = f.type in SCALARS or f.type in SPECIALS or f.type in messages
            if not known:
                raise ValueError(f"{message}.{f.name}: unknown type {f.type}")
            if f.name == "-" and (f.type not in messages or f.mode):
                raise ValueError(f"{message}: inline field {f.number} must be a plain message")
    return messages


MESSAGES: dict[str, tuple[Field, ...]] = _parse(_SPEC)
