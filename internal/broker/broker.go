// Package broker starts the NATS server with JetStream that `serve` embeds
// when it is given no --nats URL.
package broker

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/nats-io/nats-server/v2/server"
)

// Start starts NATS with JetStream storing under dir, listening
// on host:port (port -1: any free port).
func Start(listen, dir string) (*server.Server, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, mm.Permanentf("serve: --nats-listen %q: %w", listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, mm.Permanentf("serve: --nats-listen %q: bad port", listen)
	}
	if p == 0 {
		p = server.DEFAULT_PORT // what the server does with 0
	}
	// the server only logs that it cannot listen, then never becomes
	// ready: a busy address is told at once, with its cause
	if p > 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			return nil, mm.Permanentf("serve: --nats-listen %s: %w", listen, err)
		}
		ln.Close()
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: p, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, fmt.Errorf("serve: NATS server: %w", err)
	}
	// the address may be taken between the check and the server's own
	// listen: its fatal message says why it stopped
	start := &startupLog{fatal: make(chan string, 1)}
	ns.SetLogger(start, false, false)
	go ns.Start()
	for deadline := time.Now().Add(10 * time.Second); !ns.ReadyForConnections(100 * time.Millisecond); {
		select {
		case msg := <-start.fatal:
			ns.Shutdown()
			return nil, mm.Permanentf("serve: embedded NATS server on %s: %s", listen, msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, fmt.Errorf("serve: the embedded NATS server on %s did not start in 10s (last error: %s)", listen, start.lastError())
		}
	}
	return ns, nil
}

// startupLog is the embedded server's logger: it keeps its first fatal
// message and its last error (the server runs with NoLog, the daemon logs
// its own lines).
type startupLog struct {
	fatal chan string
	mu    sync.Mutex
	err   string
}

func (l *startupLog) Fatalf(format string, v ...any) {
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}

func (l *startupLog) Errorf(format string, v ...any) {
	l.mu.Lock()
	l.err = fmt.Sprintf(format, v...)
	l.mu.Unlock()
}

func (l *startupLog) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == "" {
		return "none"
	}
	return l.err
}

func (*startupLog) Noticef(string, ...any) {}
func (*startupLog) Warnf(string, ...any)   {}
func (*startupLog) Debugf(string, ...any)  {}
func (*startupLog) Tracef(string, ...any)  {}
