package main

// kwokConfigFile, in the state directory, holds the Stages that make kwok
// behave like the kubelets of the cluster's nodes (kwok has no built-in
// behaviour: without Stages it refuses to start).
const kwokConfigFile = "kwok.yaml"

// kwokStages is what the kubelets do, as kwok Stages: a Stage applies to
// the objects its selector matches (jq expressions over the object), and
// its steps patch their status or delete them. The templates are Go
// templates over the object, with kwok's functions (Now, NodeIPsWith,
// PodIPsWith, Version) and sprig's.
//
//   - node-ready: a registered node reports itself Ready, with its address
//     (kube-testenv's annotation), capacity and version. Heartbeats then go
//     through its Lease (kwok --node-lease-duration-seconds).
//   - pod-running: a pod bound to a node, not being deleted and without an
//     address starts: Running, every container running and ready, the
//     pod Ready, the host's IP and a pod IP from the node's pod CIDR
//     (PodIPsWith hands them out from spec.podCIDR, lowest free first).
//     Once a pod has its IP this Stage never matches it again, so a status
//     written afterwards (a test marking the pod not ready, as a failing
//     readiness probe would) stays as written.
//   - pod-stopping: a pod being deleted stops its containers and is no
//     longer ready, as a kubelet reports during graceful termination (the
//     container statuses are one list, replaced whole by a patch).
//   - pod-gone: a stopped pod being deleted is removed, as the kubelet does
//     once its containers have exited.
const kwokStages = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select(.type == "Ready") | .status'
      operator: NotIn
      values: ["True"]
  steps:
  - patch:
      subresource: status
      root: status
      type: strategic
      template: |
        {{ $now := Now | Quote }}
        conditions:
        - type: MemoryPressure
          status: "False"
          reason: KubeletHasSufficientMemory
          message: kubelet has sufficient memory available
          lastHeartbeatTime: {{ $now }}
          lastTransitionTime: {{ $now }}
        - type: DiskPressure
          status: "False"
          reason: KubeletHasNoDiskPressure
          message: kubelet has no disk pressure
          lastHeartbeatTime: {{ $now }}
          lastTransitionTime: {{ $now }}
        - type: PIDPressure
          status: "False"
          reason: KubeletHasSufficientPID
          message: kubelet has sufficient PID available
          lastHeartbeatTime: {{ $now }}
          lastTransitionTime: {{ $now }}
        - type: Ready
          status: "True"
          reason: KubeletReady
          message: kubelet is posting ready status (simulated by kwok)
          lastHeartbeatTime: {{ $now }}
          lastTransitionTime: {{ $now }}
        addresses:
        - type: InternalIP
          address: {{ index .metadata.annotations "` + nodeIPKey + `" | default NodeIP | Quote }}
        - type: Hostname
          address: {{ .metadata.name | Quote }}
        capacity:
          cpu: "8"
          memory: 32Gi
          pods: "110"
        allocatable:
          cpu: "8"
          memory: 32Gi
          pods: "110"
        nodeInfo:
          architecture: amd64
          operatingSystem: linux
          osImage: kwok
          kernelVersion: {{ printf "kwok-%s" Version | Quote }}
          containerRuntimeVersion: {{ printf "kwok://%s" Version | Quote }}
          kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
          machineID: ""
          systemUUID: ""
          bootID: ""
        phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-running
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: .metadata.deletionTimestamp
      operator: DoesNotExist
    - key: .status.podIP
      operator: DoesNotExist
  steps:
  - patch:
      subresource: status
      root: status
      type: strategic
      template: |
        {{ $now := Now | Quote }}
        phase: Running
        startTime: {{ $now }}
        conditions:
        - type: PodReadyToStartContainers
          status: "True"
          lastTransitionTime: {{ $now }}
        - type: Initialized
          status: "True"
          lastTransitionTime: {{ $now }}
        - type: ContainersReady
          status: "True"
          lastTransitionTime: {{ $now }}
        - type: Ready
          status: "True"
          lastTransitionTime: {{ $now }}
        {{ with .spec.initContainers }}
        initContainerStatuses:
        {{ range . }}
        - name: {{ .name | Quote }}
          image: {{ .image | Quote }}
          imageID: {{ printf "kwok://%s" .image | Quote }}
          ready: true
          restartCount: 0
          state:
            terminated:
              exitCode: 0
              reason: Completed
              startedAt: {{ $now }}
              finishedAt: {{ $now }}
        {{ end }}
        {{ end }}
        containerStatuses:
        {{ range .spec.containers }}
        - name: {{ .name | Quote }}
          image: {{ .image | Quote }}
          imageID: {{ printf "kwok://%s" .image | Quote }}
          ready: true
          started: true
          restartCount: 0
          state:
            running:
              startedAt: {{ $now }}
        {{ end }}
        {{ with NodeIPsWith .spec.nodeName }}
        hostIP: {{ index . 0 | Quote }}
        hostIPs:
        {{ range . }}
        - ip: {{ . | Quote }}
        {{ end }}
        {{ end }}
        {{ with PodIPsWith .spec.nodeName (or .spec.hostNetwork false) (or .metadata.uid "") (or .metadata.name "") (or .metadata.namespace "") }}
        podIP: {{ index . 0 | Quote }}
        podIPs:
        {{ range . }}
        - ip: {{ . | Quote }}
        {{ end }}
        {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-stopping
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: .metadata.deletionTimestamp
      operator: Exists
    - key: '.status.conditions.[] | select(.type == "Ready") | .status'
      operator: In
      values: ["True"]
  steps:
  - patch:
      subresource: status
      root: status
      type: strategic
      template: |
        {{ $now := Now | Quote }}
        conditions:
        - type: ContainersReady
          status: "False"
          reason: PodCompleted
          lastTransitionTime: {{ $now }}
        - type: Ready
          status: "False"
          reason: PodCompleted
          lastTransitionTime: {{ $now }}
        containerStatuses:
        {{ range .status.containerStatuses }}
        - name: {{ .name | Quote }}
          image: {{ .image | Quote }}
          imageID: {{ .imageID | Quote }}
          ready: false
          started: false
          restartCount: {{ .restartCount }}
          state:
            terminated:
              exitCode: 0
              reason: Completed
              finishedAt: {{ $now }}
        {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-gone
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: .metadata.deletionTimestamp
      operator: Exists
    - key: '.status.conditions.[] | select(.type == "Ready") | .status'
      operator: NotIn
      values: ["True"]
  steps:
  - delete: true
`

func writeKwokConfig(path string) error {
	return writeFileAtomic(path, []byte(kwokStages), 0o600)
}
