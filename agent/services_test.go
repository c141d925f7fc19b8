package agent_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/agent"
	"github.com/bettertest/bettertest/internal/sse"
	wt "github.com/bettertest/bettertest/internal/workertest"
)

// listener is a service that says hello to whoever connects to port 7000;
// perl is in every Debian image (perl-base is essential).
var listener = bettertest.Service{
	Image:   wt.Image,
	Command: `echo starting; exec perl -MIO::Socket::INET -e '$|=1; $s=IO::Socket::INET->new(LocalPort=>7000,Listen=>5,ReuseAddr=>1) or die "listen: $!"; print "listening\n"; while($c=$s->accept){print $c "hello from db\n"; close $c}'`,
	Ready:   bettertest.Ready{Port: 7000},
}

// split sorts a run's events: its services' labelled output, each stream's
// run of chunks once under its name (how Docker cuts a stream into chunks
// varies), and the other events.
func split(t *testing.T, evs []sse.Event) (labelled string, rest []decoded) {
	last := ""
	for _, d := range normalize(t, evs) {
		if o, ok := d.Data.(bettertest.OutputEvent); ok && strings.HasPrefix(o.Text, "[") {
			if o.Stream != last {
				labelled += o.Stream + " "
				last = o.Stream
			}
			labelled += o.Text
			continue
		}
		if r, ok := d.Data.(bettertest.ServiceReadyEvent); ok {
			r.AfterMS = 0
			d.Data = r
		}
		rest = append(rest, d)
	}
	return labelled, rest
}

func TestAServiceIsReadyBeforeTheCommandAndReachableByName(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	req := run(`bash -c 'exec 3<>/dev/tcp/db/7000 && cat <&3'`)
	req.Services = map[string]bettertest.Service{"db": listener}
	labelled, rest := split(t, w.Run(t, req).All(t))
	if labelled != "stdout [db] starting\n[db] listening\n" {
		t.Errorf("the service's output: %q", labelled)
	}
	want := []decoded{{"service_ready", bettertest.ServiceReadyEvent{Name: "db"}}, started(), stdout("hello from db\n"), exit(0)}
	if !reflect.DeepEqual(rest, want) {
		t.Errorf("events %+v\nwant %+v", rest, want)
	}

	// A service that dies before it is ready fails the run before its command.
	req = run("echo never")
	req.Services = map[string]bettertest.Service{"db": {Image: wt.Image, Command: "echo oops >&2; exit 4", Ready: bettertest.Ready{Command: "false"}}}
	labelled, rest = split(t, w.Run(t, req).All(t))
	if labelled != "stderr [db] oops\n" {
		t.Errorf("the dead service's output: %q", labelled)
	}
	if want := []decoded{errorEv("service db exited with code 4 before it was ready: see its output, labelled [db]")}; !reflect.DeepEqual(rest, want) {
		t.Errorf("events %+v\nwant %+v", rest, want)
	}
}

// The run's private network: ICC on, the host dropped, the run's container
// on it besides the runs' network, everything gone once the run ends.
func TestAServicesNetworkIsPrivateToItsRunAndRemovedWithIt(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	owner, err := agent.WorkerIdentity(w.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	req := run("echo go; sleep 60")
	req.TimeoutS = 60
	req.Services = map[string]bettertest.Service{"db": listener}
	s := w.Run(t, req)
	var id string
	for id == "" {
		ev := s.Next(t)
		if ev.Name == bettertest.EventStarted {
			var st bettertest.StartedEvent
			json.Unmarshal([]byte(ev.Data), &st)
			id = st.ID
		}
	}
	network, bridge := "bettertest-task-"+id, "btt-"+id[:11]
	out, err := exec.Command("docker", "network", "inspect", network, "--format",
		`{{.Driver}} {{index .Options "com.docker.network.bridge.name"}} icc={{index .Options "com.docker.network.bridge.enable_icc"}} internal={{.Internal}}`).CombinedOutput()
	if got, want := string(out), "bridge "+bridge+" icc= internal=false\n"; err != nil || got != want {
		t.Errorf("network %s: %q %v, want %q", network, got, err, want)
	}
	nets, err := exec.Command("docker", "inspect", "bettertest-"+id, "--format", `{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}`).CombinedOutput()
	if want := "bettertest-" + owner + " " + network + " \n"; err != nil || string(nets) != want {
		t.Errorf("the run's container is on %q (%v), want %q", nets, err, want)
	}
	rules, err := exec.Command("iptables", "-S", "INPUT").CombinedOutput()
	if err != nil || !strings.Contains(string(rules), "\n-A INPUT -i "+bridge+" -j DROP\n") {
		t.Errorf("iptables -S INPUT has no rule for %s: %s %v", bridge, rules, err)
	}

	// The network's destroy event comes after its rule and its services are gone.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, errs := wt.Docker(t).Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", "network"), filters.Arg("event", "destroy"), filters.Arg("network", network))})
	s.Close()
	select {
	case <-msgs:
	case err := <-errs:
		t.Fatal(err)
	}
	if rules, _ := exec.Command("iptables", "-S", "INPUT").CombinedOutput(); strings.Contains(string(rules), bridge) {
		t.Errorf("the rule outlived its run: %s", rules)
	}
	if out, err := exec.Command("docker", "ps", "-aq", "--filter", "name=bettertest-"+id+"-db").CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("the service outlived its run: %q %v", out, err)
	}
}

func TestBadServicesAndCachesGetAClearError(t *testing.T) {
	t.Parallel()
	w := wt.Start(t, bin, wt.Options{})
	for _, tc := range []struct {
		body, want string
	}{
		{`{"image":"` + wt.Image + `","command":"true","services":{"DB":{"image":"x","ready":{"port":1}}}}`,
			`"services" "DB": a service's name is the host name its run reaches it by: lowercase letters, digits and -, starting with a letter, at most 31 characters, e.g. "db"`},
		{`{"image":"` + wt.Image + `","command":"true","services":{"db":{"image":"x"}}}`,
			`"services" "db" needs exactly one of "ready": {"command": "..."} (exits 0 once it is ready, e.g. "pg_isready") and {"port": N} (ready once it listens on N)`},
		{`{"image":"` + wt.Image + `","command":"true","cache":true,"services":{"db":{"image":"x","ready":{"port":1}}}}`,
			`"services" are for tests: a build ("cache": true) is cached by its inputs, which a service is not part of`},
		{`{"image":"` + wt.Image + `","command":"true","caches":{"/c":"../x"}}`,
			`"caches" /c: "../x" is not a cache name: letters, digits, ".", "_" and "-", at most 64, e.g. "pip"`},
	} {
		status, msg := postError(t, w, "/run", tc.body)
		if status != http.StatusBadRequest || msg != tc.want {
			t.Errorf("%s: %d %q\nwant %q", tc.body, status, msg, tc.want)
		}
	}
}
