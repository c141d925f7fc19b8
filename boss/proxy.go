package boss

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/httpapi"
)

// workerProxy is one run's way to its worker: a Unix socket in the run's
// sandbox directory, on which the boss forwards every request to that worker,
// adding the worker's token itself. The pipedef holds no credential, the
// socket reaches that one worker only, and closing the proxy when the run
// ends cuts every connection it carries (the worker then stops what they
// started) and removes the socket: nothing the run saw works afterwards.
type workerProxy struct {
	srv    *http.Server
	socket string
}

// startWorkerProxy serves DIR/worker.sock for the sandbox's user.
func startWorkerProxy(dir string, w WorkerConfig) (*workerProxy, error) {
	token, err := bettertest.ReadTokenFile(w.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", w.Name, err)
	}
	target, err := url.Parse(w.URL)
	if err != nil {
		return nil, fmt.Errorf("worker %s: its URL %q: %w", w.Name, w.URL, err)
	}
	socket := filepath.Join(dir, "worker.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("the run's socket to worker %s: %w", w.Name, err)
	}
	if err := os.Lchown(socket, SandboxUID, SandboxUID); err != nil {
		ln.Close()
		return nil, fmt.Errorf("the run's socket to worker %s: %w", w.Name, err)
	}
	bearer := "Bearer " + string(token)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set("Authorization", bearer)
		},
		// A connection of its own per request, closed with it: no run ever
		// shares a connection to the worker with another.
		Transport:     &http.Transport{DisableKeepAlives: true},
		FlushInterval: -1, // output streams as Server-Sent Events: pass each write on at once
		ErrorHandler: func(rw http.ResponseWriter, r *http.Request, err error) {
			httpapi.Fail(rw, httpapi.BadGateway, fmt.Sprintf("the boss could not reach worker %s: %v", w.Name, err))
		},
	}
	// Full duplex: the transport reads the request body while the worker's
	// answer already streams back. Without it the server would also consume
	// the unread body when the answer's headers go out, and the two readers
	// race: now and then the transport lost, closed the connection to the
	// worker and cut the run off as it started.
	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(rw).EnableFullDuplex() // HTTP/1 always supports it
		proxy.ServeHTTP(rw, r)
	})
	p := &workerProxy{srv: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}, socket: socket}
	// Serve ends when close closes the listener.
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// close cuts every connection and removes the socket.
func (p *workerProxy) close() {
	_ = p.srv.Close()
	_ = os.Remove(p.socket)
}
