//go:build unix

package clustertest

import (
	"bytes"
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
// nginx cannot listen on port 0 and report the port it got, and a port
// found free beforehand could be taken by another test before nginx binds
// it, so StartNginx opens the listening socket and hands it to nginx.
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
	n, err := startNginx(binary, t.TempDir(), backend)
	if err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() { n.stop(t) })
	return n.addr
}

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
// a listening socket it opens on a free loopback port, and waits until
// nginx accepts connections.
//
// The socket reaches nginx as its file descriptor 3, named in the NGINX
// environment variable: that is how an nginx binary upgraded on the fly
// inherits its predecessor's sockets, and nginx then uses the inherited
// socket for the listen directive with the same address instead of
// binding one. The socket is closed here once nginx has it, so the port
// is free again when nginx exits.
func startNginx(binary, dir, backend string) (*nginx, error) {
	listener, addr, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	defer listener.Close()
	n := &nginx{addr: addr, dir: dir, done: make(chan struct{})}
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
	n.cmd.ExtraFiles = []*os.File{listener}
	n.cmd.Env = append(os.Environ(), "NGINX=3;")
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
// pid file, which it does once it has taken over its listening socket, and
// the port accepts a connection.
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
		// nginx would bind a socket of its own had it not recognized the
		// inherited one, and retries a failed bind for a few seconds.
		if bytes.Contains(n.logs(), []byte("bind() to")) {
			return fmt.Errorf("nginx did not take the socket it was handed; logs:\n%s", n.logs())
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

// listenLoopback opens a listening TCP socket on a free loopback port and
// returns it as a file for a child process, with its address. The socket
// is made with the syscall package rather than net.Listen: the file of a
// net.Listener is switched to blocking mode when exec hands it over, and
// nginx expects a non-blocking socket, as its own are.
func listenLoopback() (*os.File, string, error) {
	// Close-on-exec as holdPort's, so that only the child it is handed to
	// inherits it.
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, "", fmt.Errorf("socket: %w", err)
	}
	file := os.NewFile(uintptr(fd), "nginx listener")
	fail := func(step string, err error) (*os.File, string, error) {
		file.Close()
		return nil, "", fmt.Errorf("%s: %w", step, err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		return fail("set non-blocking", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fail("bind", err)
	}
	if err := syscall.Listen(fd, syscall.SOMAXCONN); err != nil {
		return fail("listen", err)
	}
	bound, err := syscall.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	port := bound.(*syscall.SockaddrInet4).Port
	return file, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
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
            # "-" when nginx could not connect to the backend: a client
            # then knows its request never reached it (see
            # UpstreamConnectTime).
            add_header Upstream-Connect-Time $upstream_connect_time always;
        }
    }
}
`, userLine, path("nginx.pid"), path("error.log"), path("client_body_temp"), path("proxy_temp"),
		path("fastcgi_temp"), path("uwsgi_temp"), path("scgi_temp"), addr, backend)
}
