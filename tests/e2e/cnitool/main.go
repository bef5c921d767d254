// tether-cnitool: cnitool's add/check/del on top of libcni, the library podman and containerd
// use, so the tests drive our plugins with the runtimes' own chaining, prevResult caching and
// version checks. Debian packages libcni but not cnitool, hence this small driver.
//
// Usage: tether-cnitool add|check|del <network> <netns path>
//
//	tether-cnitool bench add|del <network> <parallelism> <netns path>...
//	  runs the operation for every netns (parallelism at a time) and prints, as JSON, the
//	  milliseconds each AddNetworkList/DelNetworkList call took and the failures: the
//	  benchmarks time libcni's call itself, not this driver's start-up.
//
// Environment, as cnitool: NETCONFPATH (default /etc/cni/net.d), CNI_PATH, CNI_IFNAME (eth0),
// CNI_ARGS ("K=V;..."), CAP_ARGS (JSON capability args); and CNI_CONTAINERID (default: cnitool's
// "cnitool-" + sha512(netns)[:20]) and CNI_CACHE_DIR (libcni's result cache; default its own).
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

func main() {
	if len(os.Args) >= 6 && os.Args[1] == "bench" {
		bench(os.Args[2], os.Args[3], os.Args[4], os.Args[5:])
		return
	}
	if len(os.Args) != 4 {
		fail("usage: %s add|check|del <network> <netns>", os.Args[0])
	}
	cmd, netName, netns := os.Args[1], os.Args[2], os.Args[3]
	list, cninet, rt := setup(netName, netns)
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

func bench(op, netName, parallel string, netnses []string) {
	var workers int
	if _, err := fmt.Sscanf(parallel, "%d", &workers); err != nil || workers < 1 {
		fail("bench: parallelism must be a positive integer")
	}
	ms := make([]float64, len(netnses))
	errs := make([]string, len(netnses))
	portBase := 0
	if s := os.Getenv("BENCH_PORT_BASE"); s != "" {
		if _, err := fmt.Sscanf(s, "%d", &portBase); err != nil {
			fail("BENCH_PORT_BASE must be an integer")
		}
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				list, cninet, rt := setup(netName, netnses[i])
				if portBase > 0 {
					if rt.CapabilityArgs == nil {
						rt.CapabilityArgs = map[string]interface{}{}
					}
					rt.CapabilityArgs["portMappings"] = []map[string]interface{}{
						{"hostPort": portBase + i, "containerPort": 80, "protocol": "tcp"}}
				}
				start := time.Now()
				var err error
				if op == "add" {
					_, err = cninet.AddNetworkList(context.Background(), list, rt)
				} else {
					err = cninet.DelNetworkList(context.Background(), list, rt)
				}
				ms[i] = float64(time.Since(start).Microseconds()) / 1000.0
				if err != nil {
					errs[i] = err.Error()
				}
			}
		}()
	}
	for i := range netnses {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	var failures []string
	for _, e := range errs {
		if e != "" {
			failures = append(failures, e)
		}
	}
	out, _ := json.Marshal(map[string]interface{}{"ms": ms, "failures": failures})
	fmt.Println(string(out))
}

func setup(netName, netns string) (*libcni.NetworkConfigList, *libcni.CNIConfig, *libcni.RuntimeConf) {
	list, err := libcni.LoadConfList(env("NETCONFPATH", "/etc/cni/net.d"), netName)
	if err != nil {
		fail("loading network %q: %v", netName, err)
	}

	var capArgs map[string]interface{}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &capArgs); err != nil {
			fail("CAP_ARGS: %v", err)
		}
	}
	var cniArgs [][2]string
	if s := os.Getenv("CNI_ARGS"); s != "" {
		for _, pair := range strings.Split(s, ";") {
			kv := strings.SplitN(pair, "=", 2)
			if len(kv) != 2 {
				fail("CNI_ARGS: invalid pair %q", pair)
			}
			cniArgs = append(cniArgs, [2]string{kv[0], kv[1]})
		}
	}

	netnsAbs, err := filepath.Abs(netns)
	if err != nil {
		fail("netns path: %v", err)
	}
	containerID := os.Getenv("CNI_CONTAINERID")
	if containerID == "" {
		containerID = fmt.Sprintf("cnitool-%x", sha512.Sum512([]byte(netnsAbs)))[:len("cnitool-")+20]
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    containerID,
		NetNS:          netnsAbs,
		IfName:         env("CNI_IFNAME", "eth0"),
		Args:           cniArgs,
		CapabilityArgs: capArgs,
		CacheDir:       os.Getenv("CNI_CACHE_DIR"),
	}
	cninet := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")),
		os.Getenv("CNI_CACHE_DIR"), nil)
	return list, cninet, rt
}
