package api

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestBodyDeadlineGrowsWithProgress(t *testing.T) {
	start := time.Unix(1000, 0)
	b := &deadlineBody{start: start, timeout: 30 * time.Second, rate: 32 << 10}
	for _, tc := range []struct {
		read int64
		want time.Duration
	}{
		{0, 30 * time.Second},
		{100, 30 * time.Second},
		{32 << 10, 31 * time.Second},
		{10 << 30, 30*time.Second + (10<<30)/(32<<10)*time.Second}, // 10 GiB: no overflow
	} {
		b.n = tc.read
		if got := b.deadline().Sub(start); got != tc.want {
			t.Errorf("after %d bytes: %v, want %v", tc.read, got, tc.want)
		}
	}
}

// A body trickled a byte at a time is answered 408 and the connection closed once the
// deadline passes; a prompt body on the same server is unaffected.
func TestSlowBodyIsCutOff(t *testing.T) {
	h := newHarness(t, Config{BodyTimeout: 300 * time.Millisecond})
	srv := httptest.NewServer(h.srv.Handler())
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/auth/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", srv.Listener.Addr())
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	give := time.After(20 * time.Second)
	for {
		select {
		case line := <-got:
			if !strings.Contains(line, " 408 ") {
				t.Fatalf("slow body answered %q, want 408", line)
			}
			res, err := http.Post(srv.URL+"/api/auth/login", "application/json", strings.NewReader(`{"username":"x","password":"y"}`))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 401 {
				t.Fatalf("prompt body: %d", res.StatusCode)
			}
			return
		case <-tick.C:
			c.Write([]byte(" ")) // errors once the server has closed: the reader reports
		case <-give:
			t.Fatal("a trickled body held the connection for 20 s")
		}
	}
}
