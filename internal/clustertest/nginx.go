//go:build unix

package clustertest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// nginxStartTimeout bounds how long StartNginx waits for nginx to
	// accept connections. nginx is up in a few milliseconds; the bound is
	// for a machine loaded by the race detector.
	nginxStartTimeout = 10 * time.Second
	// nginxStopTimeout bounds the graceful quit at cleanup before nginx is
	// killed. It is longer than the worker_shutdown_timeout in the
	// configuration, after which workers drop the connections still open.
	nginxStopTimeout = 10 * time.Second
	// nginxAttempts is how many free ports StartNginx tries: a port found
	// free can be taken by another test's listener before nginx binds it.
	nginxAttempts = 5
)

// NginxPath returns the nginx binary to run: the one on PATH, else Debian's
// /usr/sbin/nginx, which is not on a non-root user's PATH.
func NginxPath() (string, bool) {
	if path, err := exec.LookPath("nginx"); err == nil {
		return path, true
	}
	const debian = "/usr/sbin/nginx"
	if info, err := os.Stat(debian); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
		return debian, true
	}
	return "", false
}

// StartNginx starts an nginx reverse proxy on a free loopback port in front
// of the HTTP server at backend (host:port), and returns the address it
// listens on. Every path is proxied with the configuration commonly
// published for WebSocket upgrades, which is what an operator would put in
// front of rafthttp. nginx is stopped, and waited for, when the test ends.
//
// Without nginx the test is skipped, except under CI (the CI variable set),
// where a missing nginx is an install step gone wrong and fails the test:
// a suite that skips its proxy tests must not pass silently.
//
// It is built only on Unix, where nginx's worker can be killed with its
// master through their process group: tests that use it need the same
// build constraint.
func StartNginx(t testing.TB, backend string) string {
	t.Helper()
	binary, ok := NginxPath()
	if !ok {
		if os.Getenv("CI") != "" {
			t.Fatal("nginx not found on PATH or at /usr/sbin/nginx; CI must install it (see .ci/run)")
		}
		t.Skip("nginx not found on PATH or at /usr/sbin/nginx: apt-get install nginx to run this test")
	}
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		n, err := startNginx(binary, filepath.Join(dir, strconv.Itoa(attempt)), backend)
		if err == nil {
			t.Cleanup(func() { n.stop(t) })
			return n.addr
		}
		if !errors.Is(err, errAddrInUse) || attempt == nginxAttempts {
			t.Fatalf("start nginx: %v", err)
		}
	}
}

// errAddrInUse is startNginx's error when another listener took the port.
var errAddrInUse = errors.New("port taken before nginx could bind it")

// nginx is one running nginx master process.
type nginx struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	// done is closed once cmd.Wait has returned, with its error in waitErr.
	done    chan struct{}
	waitErr error
}

// startNginx writes a configuration under dir and starts nginx with it on
// a port that was free a moment ago, and waits until it accepts
// connections.
func startNginx(binary, dir, backend string) (*nginx, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &nginx{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, done: make(chan struct{})}
	config := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(config, []byte(nginxConfig(dir, n.addr, backend)), 0o600); err != nil {
		return nil, err
	}
	output, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		return nil, err
	}
	defer output.Close()
	// -e sends the messages nginx logs before it has read error_log to the
	// same file, instead of the compiled-in /var/log/nginx/error.log, which
	// a non-root user cannot open.
	n.cmd = exec.Command(binary, "-p", dir, "-e", n.errorLog(), "-c", config, "-g", "daemon off;")
	n.cmd.Stdout, n.cmd.Stderr = output, output
	// Its own process group, so that a kill reaches the worker too: a
	// worker outlives a master killed with SIGKILL.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		n.waitErr = n.cmd.Wait()
		close(n.done)
	}()
	if err := n.waitReady(); err != nil {
		n.kill()
		return nil, err
	}
	return n, nil
}

// waitReady waits, within nginxStartTimeout, until nginx has written its
// pid file, which it does only after binding its port, and the port
// accepts a connection.
func (n *nginx) waitReady() error {
	deadline := time.Now().Add(nginxStartTimeout)
	interval := time.Millisecond
	pid := strconv.Itoa(n.cmd.Process.Pid)
	for {
		select {
		case <-n.done:
			return n.exitError()
		default:
		}
		// nginx retries a failed bind for a few seconds before it gives
		// up: give up on the port at the first failure instead.
		if bytes.Contains(n.logs(), []byte("Address already in use")) {
			return fmt.Errorf("%w: %s", errAddrInUse, n.addr)
		}
		written, _ := os.ReadFile(filepath.Join(n.dir, "nginx.pid"))
		if strings.TrimSpace(string(written)) == pid {
			conn, err := net.DialTimeout("tcp", n.addr, time.Second)
			if err == nil {
				conn.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx not accepting connections on %s within %v; logs:\n%s",
				n.addr, nginxStartTimeout, n.logs())
		}
		time.Sleep(interval)
		interval = min(2*interval, 50*time.Millisecond)
	}
}

// exitError describes nginx's exit, once done is closed.
func (n *nginx) exitError() error {
	if bytes.Contains(n.logs(), []byte("Address already in use")) {
		return fmt.Errorf("%w: %s", errAddrInUse, n.addr)
	}
	return fmt.Errorf("nginx exited (%v); logs:\n%s", n.waitErr, n.logs())
}

// stop quits nginx gracefully, kills it if it has not quit within
// nginxStopTimeout, and waits for it. It fails the test if nginx had
// already exited: the proxy the test relied on was gone.
func (n *nginx) stop(t testing.TB) {
	t.Helper()
	select {
	case <-n.done:
		// A master killed from outside leaves its worker behind, which
		// keeps the process group, and so its id, alive.
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		t.Errorf("nginx exited before the end of the test (%v); logs:\n%s", n.waitErr, n.logs())
		return
	default:
	}
	// SIGQUIT to the master: the worker stops accepting, finishes or (after
	// worker_shutdown_timeout) drops its connections, and the master exits
	// after reaping it.
	n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.done:
	case <-time.After(nginxStopTimeout):
		t.Logf("nginx did not quit within %v of SIGQUIT; killing it", nginxStopTimeout)
		n.kill()
	}
	if t.Failed() {
		t.Logf("nginx logs:\n%s", n.logs())
	}
}

// kill kills the whole process group and waits for the master. The master
// leads the group and stays unreaped until done is closed, so the group id
// cannot have been reused.
func (n *nginx) kill() {
	select {
	case <-n.done:
	default:
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-n.done
}

func (n *nginx) errorLog() string { return filepath.Join(n.dir, "error.log") }

// logs returns nginx's error log followed by anything it printed.
func (n *nginx) logs() []byte {
	errorLog, _ := os.ReadFile(n.errorLog())
	output, _ := os.ReadFile(filepath.Join(n.dir, "output.log"))
	return append(errorLog, output...)
}

// freePort returns a loopback port that was free when it returned.
func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

// nginxConfig returns the configuration: every file nginx writes under dir,
// one worker, and one server on addr proxying everything to backend.
//
// The location block is the usual WebSocket recipe: HTTP/1.1 to the backend
// (an upgrade is impossible over 1.0), and the hop-by-hop Upgrade and
// Connection headers, which a proxy drops, set again from the client's. The
// long read and send timeouts keep nginx from closing an upgraded
// connection that is idle for a while, as a raft connection to a quiet
// follower can be: nginx's default is 60 s.
func nginxConfig(dir, addr, backend string) string {
	path := func(name string) string { return strconv.Quote(filepath.Join(dir, name)) }
	// As root, nginx runs its worker as nobody unless told otherwise, and
	// nobody cannot write to the test's private temporary directory.
	userLine := ""
	if os.Geteuid() == 0 {
		if current, err := user.Current(); err == nil {
			group := current.Gid
			if g, err := user.LookupGroupId(current.Gid); err == nil {
				group = g.Name
			}
			userLine = fmt.Sprintf("user %s %s;\n", current.Username, group)
		}
	}
	return fmt.Sprintf(`# Written by clustertest.StartNginx.
%sworker_processes 1;
# At the test's end, drop the connections still open rather than wait for
# them: an upgraded connection would otherwise hold the quit until its
# proxy_read_timeout, and raft nodes behind nginx are still connected when
# its cleanup runs, before theirs.
worker_shutdown_timeout 250ms;
pid %s;
error_log %s info;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;

    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }

    server {
        listen %s;

        location / {
            proxy_pass http://%s;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
}
`, userLine, path("nginx.pid"), path("error.log"), path("client_body_temp"), path("proxy_temp"),
		path("fastcgi_temp"), path("uwsgi_temp"), path("scgi_temp"), addr, backend)
}
