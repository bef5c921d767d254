// tether-cnitool: cnitool's add/check/del on top of libcni, the library podman and containerd
// use, so the tests drive our plugins with the runtimes' own chaining, prevResult caching and
// version checks. Debian packages libcni but not cnitool, hence this small driver.
//
// Usage: tether-cnitool add|check|del <network> <netns path>
//
//	tether-cnitool serve
//	  the benchmarks' driver (bench/bench.py): reads one JSON request per line on stdin,
//	  {"parallel": N, "jobs": [job...]}, runs the jobs N at a time and answers one JSON line,
//	  {"ms": [...], "errors": [...], "out": [...]}, in job order ("" for no error). A job is
//	  {"kind": "cni", "op": "add"|"del", "net", "netns", "confdir", "cnipath", "cachedir",
//	   "port" (a published hostPort, 0 for none), "name" (K8S_POD_NAME, "" for none)}: one
//	  AddNetworkList/DelNetworkList, timed around libcni's call itself; or
//	  {"kind": "exec", "argv": [...], "stdin": "...", "env": {...}}: one process (netavark,
//	  the veth floor tool, a VERSION call), timed from fork to exit, its stdout in "out".
//	  One long-lived driver for every side lets the benchmark interleave them call by call,
//	  so all sides see the same machine load, and keeps the driver's start-up out of every
//	  figure.
//
// Environment, as cnitool: NETCONFPATH (default /etc/cni/net.d), CNI_PATH, CNI_IFNAME (eth0),
// CNI_ARGS ("K=V;..."), CAP_ARGS (JSON capability args); and CNI_CONTAINERID (default: cnitool's
// "cnitool-" + sha512(netns)[:20]) and CNI_CACHE_DIR (libcni's result cache; default its own).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tether-cnitool: "+format+"\n", args...)
	os.Exit(1)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// params are what one libcni call needs besides the operation.
type params struct {
	net, netns, confDir, cniPath, cacheDir, ifname, containerID string
	cniArgs                                                     [][2]string
	capArgs                                                     map[string]interface{}
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "serve" {
		serve()
		return
	}
	if len(os.Args) != 4 {
		fail("usage: %s add|check|del <network> <netns> | serve", os.Args[0])
	}
	cmd := os.Args[1]
	p := params{net: os.Args[2], netns: os.Args[3], confDir: env("NETCONFPATH", "/etc/cni/net.d"),
		cniPath: os.Getenv("CNI_PATH"), cacheDir: os.Getenv("CNI_CACHE_DIR"),
		ifname: env("CNI_IFNAME", "eth0"), containerID: os.Getenv("CNI_CONTAINERID")}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &p.capArgs); err != nil {
			fail("CAP_ARGS: %v", err)
		}
	}
	if s := os.Getenv("CNI_ARGS"); s != "" {
		for _, pair := range strings.Split(s, ";") {
			kv := strings.SplitN(pair, "=", 2)
			if len(kv) != 2 {
				fail("CNI_ARGS: invalid pair %q", pair)
			}
			p.cniArgs = append(p.cniArgs, [2]string{kv[0], kv[1]})
		}
	}
	list, cninet, rt, err := setup(p)
	if err != nil {
		fail("%v", err)
	}
	ctx := context.Background()
	switch cmd {
	case "add":
		result, err := cninet.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail("add: %v", err)
		}
		if err := result.Print(); err != nil {
			fail("printing result: %v", err)
		}
	case "check":
		if err := cninet.CheckNetworkList(ctx, list, rt); err != nil {
			fail("check: %v", err)
		}
	case "del":
		if err := cninet.DelNetworkList(ctx, list, rt); err != nil {
			fail("del: %v", err)
		}
	default:
		fail("unknown command %q", cmd)
	}
}

type job struct {
	Kind     string            `json:"kind"`
	Op       string            `json:"op"`
	Net      string            `json:"net"`
	Netns    string            `json:"netns"`
	ConfDir  string            `json:"confdir"`
	CNIPath  string            `json:"cnipath"`
	CacheDir string            `json:"cachedir"`
	Port     int               `json:"port"`
	Name     string            `json:"name"`
	Argv     []string          `json:"argv"`
	Stdin    string            `json:"stdin"`
	Env      map[string]string `json:"env"`
	Lock     string            `json:"lock"`
}

type request struct {
	Parallel int   `json:"parallel"`
	Jobs     []job `json:"jobs"`
}

type response struct {
	Ms     []float64 `json:"ms"`
	Errors []string  `json:"errors"`
	Out    []string  `json:"out"`
}

func serve() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fail("serve: bad request: %v", err)
		}
		resp := run(req)
		b, _ := json.Marshal(resp)
		out.Write(b)
		out.WriteString("\n")
		out.Flush()
	}
}

func run(req request) response {
	n := len(req.Jobs)
	resp := response{Ms: make([]float64, n), Errors: make([]string, n), Out: make([]string, n)}
	workers := req.Parallel
	if workers < 1 {
		workers = 1
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				resp.Ms[i], resp.Out[i], resp.Errors[i] = runJob(req.Jobs[i])
			}
		}()
	}
	for i := range req.Jobs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return resp
}

func runJob(j job) (ms float64, out string, errText string) {
	switch j.Kind {
	case "cni":
		p := params{net: j.Net, netns: j.Netns, confDir: j.ConfDir, cniPath: j.CNIPath,
			cacheDir: j.CacheDir, ifname: "eth0"}
		if j.Port > 0 {
			p.capArgs = map[string]interface{}{"portMappings": []map[string]interface{}{
				{"hostPort": j.Port, "containerPort": 80, "protocol": "tcp"}}}
		}
		if j.Name != "" {
			p.cniArgs = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", j.Name}}
		}
		list, cninet, rt, err := setup(p)
		if err != nil {
			return 0, "", err.Error()
		}
		start := time.Now()
		switch j.Op {
		case "add":
			_, err = cninet.AddNetworkList(context.Background(), list, rt)
		case "del":
			err = cninet.DelNetworkList(context.Background(), list, rt)
		default:
			err = fmt.Errorf("unknown op %q", j.Op)
		}
		ms = float64(time.Since(start).Microseconds()) / 1000.0
		if err != nil {
			errText = err.Error()
		}
		return ms, "", errText
	case "exec":
		if len(j.Argv) == 0 {
			return 0, "", "exec: empty argv"
		}
		cmd := exec.Command(j.Argv[0], j.Argv[1:]...)
		cmd.Stdin = strings.NewReader(j.Stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Env = os.Environ()
		for k, v := range j.Env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		start := time.Now()
		var err error
		if j.Lock != "" {
			err = locked(j.Lock, cmd.Run)
		} else {
			err = cmd.Run()
		}
		ms = float64(time.Since(start).Microseconds()) / 1000.0
		if err != nil {
			errText = fmt.Sprintf("%v: %s %s", err, strings.TrimSpace(stderr.String()),
				strings.TrimSpace(stdout.String()))
		}
		return ms, stdout.String(), errText
	}
	return 0, "", fmt.Sprintf("unknown job kind %q", j.Kind)
}

// locked runs f holding an exclusive flock on path (created if missing).
func locked(path string, f func() error) error {
	lock, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	return f()
}

func setup(p params) (*libcni.NetworkConfigList, *libcni.CNIConfig, *libcni.RuntimeConf, error) {
	list, err := libcni.LoadConfList(p.confDir, p.net)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("loading network %q: %v", p.net, err)
	}
	netnsAbs, err := filepath.Abs(p.netns)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("netns path: %v", err)
	}
	containerID := p.containerID
	if containerID == "" {
		containerID = fmt.Sprintf("cnitool-%x", sha512.Sum512([]byte(netnsAbs)))[:len("cnitool-")+20]
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    containerID,
		NetNS:          netnsAbs,
		IfName:         p.ifname,
		Args:           p.cniArgs,
		CapabilityArgs: p.capArgs,
		CacheDir:       p.cacheDir,
	}
	cninet := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(p.cniPath), p.cacheDir, nil)
	return list, cninet, rt, nil
}
