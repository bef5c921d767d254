// tether-cri: the few CRI calls a kubelet makes for a pod, sent to containerd's CRI plugin
// (runtime.v1), so the e2e tests drive containerd exactly as Kubernetes does: RunPodSandbox
// (CNI ADD of the pod network and of containerd's loopback network), CreateContainer and
// StartContainer, StopPodSandbox (CNI DEL), RemovePodSandbox (DEL again, CNI_NETNS empty).
//
// Debian packages grpc-go and the protobuf runtime but not the CRI API (k8s.io/cri-api), and
// crictl not at all, so the messages are encoded here field by field with protowire, after
// k8s.io/cri-api/pkg/apis/runtime/v1/api.proto; only the fields the tests set or read.
//
// Usage: tether-cri -socket PATH COMMAND [ARG]
//
//	version                          the runtime's name and version, as JSON
//	run-pod < pod.json               RunPodSandbox; prints the sandbox ID
//	pod-status ID                    PodSandboxStatus (verbose), as JSON
//	stop-pod ID | remove-pod ID      StopPodSandbox | RemovePodSandbox
//	create-container ID < ctr.json   CreateContainer in sandbox ID; prints the container ID
//	start-container ID | stop-container ID | remove-container ID
//
// pod.json: {"name","uid","namespace","hostname","logDirectory","cgroupParent",
// "portMappings":[{"protocol":"TCP"|"UDP"|"SCTP","containerPort","hostPort","hostIp"}],
// "dns":{"servers","searches","options"},"labels":{}}; ctr.json: {"name","image","command":[],
// "args":[],"logPath","pod":<the pod.json it runs in>}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

const service = "/runtime.v1.RuntimeService/"

type PortMapping struct {
	Protocol      string `json:"protocol"`
	ContainerPort int32  `json:"containerPort"`
	HostPort      int32  `json:"hostPort"`
	HostIP        string `json:"hostIp"`
}

type DNS struct {
	Servers  []string `json:"servers"`
	Searches []string `json:"searches"`
	Options  []string `json:"options"`
}

type Pod struct {
	Name         string            `json:"name"`
	UID          string            `json:"uid"`
	Namespace    string            `json:"namespace"`
	Hostname     string            `json:"hostname"`
	LogDirectory string            `json:"logDirectory"`
	CgroupParent string            `json:"cgroupParent"`
	PortMappings []PortMapping     `json:"portMappings"`
	DNS          *DNS              `json:"dns"`
	Labels       map[string]string `json:"labels"`
}

type Container struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
	LogPath string   `json:"logPath"`
	Pod     Pod      `json:"pod"`
}

// rawCodec hands pre-encoded messages to grpc and returns replies undecoded. It is registered
// under the name "proto": the content-subtype the server's default codec answers to.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tether-cri: "+format+"\n", args...)
	os.Exit(1)
}

// --- encoding ---------------------------------------------------------------------------

func str(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func varint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func msg(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// A map<string,string> field: one entry message {key = 1, value = 2} per pair, in key order.
func strMap(b []byte, num protowire.Number, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b = msg(b, num, str(str(nil, 1, k), 2, m[k]))
	}
	return b
}

var protocols = map[string]uint64{"TCP": 0, "UDP": 1, "SCTP": 2}

func podSandboxConfig(p Pod) []byte {
	// PodSandboxMetadata {name = 1, uid = 2, namespace = 3, attempt = 4}
	meta := str(str(str(nil, 1, p.Name), 2, p.UID), 3, p.Namespace)
	b := msg(nil, 1, meta)
	b = str(b, 2, p.Hostname)
	b = str(b, 3, p.LogDirectory)
	if p.DNS != nil {
		// DNSConfig {servers = 1, searches = 2, options = 3}
		var d []byte
		for _, s := range p.DNS.Servers {
			d = str(d, 1, s)
		}
		for _, s := range p.DNS.Searches {
			d = str(d, 2, s)
		}
		for _, s := range p.DNS.Options {
			d = str(d, 3, s)
		}
		b = msg(b, 4, d)
	}
	for _, pm := range p.PortMappings {
		proto, ok := protocols[pm.Protocol]
		if !ok {
			fail("unknown protocol %q", pm.Protocol)
		}
		// PortMapping {protocol = 1, container_port = 2, host_port = 3, host_ip = 4}
		m := varint(nil, 1, proto)
		m = varint(m, 2, uint64(pm.ContainerPort))
		m = varint(m, 3, uint64(pm.HostPort))
		m = str(m, 4, pm.HostIP)
		b = msg(b, 5, m)
	}
	b = strMap(b, 6, p.Labels)
	// LinuxPodSandboxConfig {cgroup_parent = 1}
	b = msg(b, 8, str(nil, 1, p.CgroupParent))
	return b
}

func containerConfig(c Container) []byte {
	b := msg(nil, 1, str(nil, 1, c.Name)) // ContainerMetadata {name = 1}
	b = msg(b, 2, str(nil, 1, c.Image))   // ImageSpec {image = 1}
	for _, s := range c.Command {
		b = str(b, 3, s)
	}
	for _, s := range c.Args {
		b = str(b, 4, s)
	}
	b = str(b, 11, c.LogPath)
	return b
}

// --- decoding ---------------------------------------------------------------------------

// fields splits a message into its fields: number -> raw values (bytes for length-delimited
// fields, the varint for varints), in order.
func fields(b []byte) map[protowire.Number][]interface{} {
	out := map[protowire.Number][]interface{}{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			fail("bad reply: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				fail("bad reply: %v", protowire.ParseError(m))
			}
			out[num] = append(out[num], v)
			b = b[m:]
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				fail("bad reply: %v", protowire.ParseError(m))
			}
			out[num] = append(out[num], v)
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				fail("bad reply: %v", protowire.ParseError(m))
			}
			b = b[m:]
		}
	}
	return out
}

func getStr(f map[protowire.Number][]interface{}, num protowire.Number) string {
	if v, ok := f[num]; ok {
		return string(v[len(v)-1].([]byte))
	}
	return ""
}

func getMsg(f map[protowire.Number][]interface{}, num protowire.Number) map[protowire.Number][]interface{} {
	if v, ok := f[num]; ok {
		return fields(v[len(v)-1].([]byte))
	}
	return map[protowire.Number][]interface{}{}
}

func getVarint(f map[protowire.Number][]interface{}, num protowire.Number) uint64 {
	if v, ok := f[num]; ok {
		return v[len(v)-1].(uint64)
	}
	return 0
}

// --- calls ------------------------------------------------------------------------------

func call(conn *grpc.ClientConn, method string, req []byte) []byte {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var reply []byte
	if err := conn.Invoke(ctx, service+method, &req, &reply, grpc.ForceCodec(rawCodec{})); err != nil {
		fail("%s: %v", method, err)
	}
	return reply
}

func readJSON(v interface{}) {
	if err := json.NewDecoder(os.Stdin).Decode(v); err != nil {
		fail("reading the spec from stdin: %v", err)
	}
}

func printJSON(v interface{}) {
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
}

func main() {
	socket := flag.String("socket", "/run/containerd/containerd.sock", "containerd's socket")
	flag.Parse()
	args := flag.Args()
	if len(args) < 1 {
		fail("usage: tether-cri -socket PATH COMMAND [ID]")
	}
	need := func() string {
		if len(args) != 2 {
			fail("%s needs an ID", args[0])
		}
		return args[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	conn, err := grpc.DialContext(ctx, "passthrough:///cri", grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", *socket)
		}))
	cancel()
	if err != nil {
		fail("connecting to %s: %v", *socket, err)
	}
	defer conn.Close()

	switch args[0] {
	case "version":
		f := fields(call(conn, "Version", str(nil, 1, "v1")))
		printJSON(map[string]string{"version": getStr(f, 1), "runtimeName": getStr(f, 2),
			"runtimeVersion": getStr(f, 3), "runtimeApiVersion": getStr(f, 4)})
	case "run-pod":
		var p Pod
		readJSON(&p)
		// RunPodSandboxRequest {config = 1}; RunPodSandboxResponse {pod_sandbox_id = 1}
		fmt.Println(getStr(fields(call(conn, "RunPodSandbox", msg(nil, 1, podSandboxConfig(p)))), 1))
	case "pod-status":
		// PodSandboxStatusRequest {pod_sandbox_id = 1, verbose = 2}
		f := fields(call(conn, "PodSandboxStatus", varint(str(nil, 1, need()), 2, 1)))
		// PodSandboxStatus {id = 1, state = 3, network = 5 {ip = 1, additional_ips = 2 {ip = 1}}}
		st := getMsg(f, 1)
		network := getMsg(st, 5)
		extra := []string{}
		for _, v := range network[2] {
			extra = append(extra, getStr(fields(v.([]byte)), 1))
		}
		info := map[string]string{}
		for _, v := range f[2] { // map<string, string> info = 2
			e := fields(v.([]byte))
			info[getStr(e, 1)] = getStr(e, 2)
		}
		state := "SANDBOX_READY"
		if getVarint(st, 3) == 1 {
			state = "SANDBOX_NOTREADY"
		}
		printJSON(map[string]interface{}{"id": getStr(st, 1), "state": state,
			"ip": getStr(network, 1), "additionalIps": extra, "info": info})
	case "stop-pod":
		call(conn, "StopPodSandbox", str(nil, 1, need()))
	case "remove-pod":
		call(conn, "RemovePodSandbox", str(nil, 1, need()))
	case "create-container":
		var c Container
		readJSON(&c)
		// CreateContainerRequest {pod_sandbox_id = 1, config = 2, sandbox_config = 3}
		req := msg(msg(str(nil, 1, need()), 2, containerConfig(c)), 3, podSandboxConfig(c.Pod))
		fmt.Println(getStr(fields(call(conn, "CreateContainer", req)), 1))
	case "start-container":
		call(conn, "StartContainer", str(nil, 1, need()))
	case "stop-container":
		// StopContainerRequest {container_id = 1, timeout = 2}
		call(conn, "StopContainer", varint(str(nil, 1, need()), 2, 1))
	case "remove-container":
		call(conn, "RemoveContainer", str(nil, 1, need()))
	default:
		fail("unknown command %q", args[0])
	}
}
