// A DoH server over HTTP/3 (RFC 8484, RFC 9114) on quic-go's http3 package,
// for tests of the relay's h3:// upstream against an implementation that is
// not ours. GET and POST /dns-query are forwarded over UDP to -backend with
// miekg/dns, or without -backend answered from memory (NOERROR, no records;
// for the bench). With -h2 the same handler is also served over HTTP/2 on
// TLS over TCP (Go's net/http), for comparing like with like. Prints
// "port N" (or "port N h2 M") once listening, then answers commands on
// stdin, one line each:
//
//	conns       the number of QUIC connections accepted so far
//	requests    the number of DoH requests served so far
//	goaway      sends GOAWAY on every open connection's control stream, with
//	            the stream ID after the last request accepted (RFC 9114 §5.2);
//	            requests on later streams are then rejected with H3_REQUEST_REJECTED
//	goaway0     the same with stream ID 0: no request will be processed
//	close       closes every open connection with H3_NO_ERROR
//
// Built by the tests in GOPATH mode (Debian's golang-github-lucas-clemente-quic-go-dev).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lucas-clemente/quic-go"
	"github.com/lucas-clemente/quic-go/http3"
	"github.com/lucas-clemente/quic-go/quicvarint"
	"github.com/miekg/dns"
)

// conn records the control stream http3 opens first and the highest request stream accepted.
type conn struct {
	quic.EarlyConnection
	mu       sync.Mutex
	control  quic.SendStream
	maxID    int64
	goneAway bool
	goawayID uint64
}

func (c *conn) OpenUniStream() (quic.SendStream, error) {
	s, err := c.EarlyConnection.OpenUniStream()
	c.mu.Lock()
	if err == nil && c.control == nil {
		c.control = s
	}
	c.mu.Unlock()
	return s, err
}

// AcceptStream hands requests to http3, except those at or past a GOAWAY's
// stream ID: those are rejected unprocessed (H3_REQUEST_REJECTED), as RFC 9114 §5.2 has it.
func (c *conn) AcceptStream(ctx context.Context) (quic.Stream, error) {
	for {
		s, err := c.EarlyConnection.AcceptStream(ctx)
		if err != nil {
			return s, err
		}
		c.mu.Lock()
		rejected := c.goneAway && uint64(s.StreamID()) >= c.goawayID
		if !rejected && int64(s.StreamID()) > c.maxID {
			c.maxID = int64(s.StreamID())
		}
		c.mu.Unlock()
		if !rejected {
			return s, nil
		}
		s.CancelRead(0x10b)
		s.CancelWrite(0x10b)
	}
}

// goAway writes a GOAWAY frame (type 0x7) carrying a stream ID on the control stream.
func (c *conn) goAway(zero bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.control == nil {
		return
	}
	id := uint64(c.maxID + 4)
	if zero {
		id = 0
	}
	c.goneAway = true
	c.goawayID = id
	payload := &bytes.Buffer{}
	quicvarint.Write(payload, id)
	frame := &bytes.Buffer{}
	quicvarint.Write(frame, 0x7)
	quicvarint.Write(frame, uint64(payload.Len()))
	frame.Write(payload.Bytes())
	c.control.Write(frame.Bytes())
}

type listener struct {
	quic.EarlyListener
	mu    sync.Mutex
	conns []*conn
	total int64
}

func (l *listener) Accept(ctx context.Context) (quic.EarlyConnection, error) {
	c, err := l.EarlyListener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	wrapped := &conn{EarlyConnection: c, maxID: -4}
	l.mu.Lock()
	l.conns = append(l.conns, wrapped)
	l.total++
	l.mu.Unlock()
	return wrapped, nil
}

func (l *listener) each(f func(*conn)) {
	l.mu.Lock()
	conns := append([]*conn(nil), l.conns...)
	l.mu.Unlock()
	for _, c := range conns {
		if c.Context().Err() == nil {
			f(c)
		}
	}
}

func forward(backend string, requests *int64) http.HandlerFunc {
	client := &dns.Client{Net: "udp"}
	return func(w http.ResponseWriter, r *http.Request) {
		var wire []byte
		var err error
		switch r.Method {
		case http.MethodGet:
			wire, err = base64.RawURLEncoding.DecodeString(r.URL.Query().Get("dns"))
		case http.MethodPost:
			if r.Header.Get("Content-Type") != "application/dns-message" {
				http.Error(w, "content-type", http.StatusUnsupportedMediaType)
				return
			}
			wire, err = io.ReadAll(io.LimitReader(r.Body, 65536))
		default:
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		query := new(dns.Msg)
		if err != nil || query.Unpack(wire) != nil {
			http.Error(w, "not a DNS query", http.StatusBadRequest)
			return
		}
		atomic.AddInt64(requests, 1)
		answer := new(dns.Msg).SetReply(query)
		if backend != "" {
			answer, _, err = client.Exchange(query, backend)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		out, err := answer.Pack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/dns-message")
		w.Write(out)
	}
}

func main() {
	certFile := flag.String("cert", "", "certificate chain, PEM")
	keyFile := flag.String("key", "", "private key, PEM")
	backend := flag.String("backend", "", "host:port of a DNS server (UDP); none: answer from memory")
	h2 := flag.Bool("h2", false, "also serve HTTP/2 over TLS on a TCP port")
	flag.Parse()

	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h3"}}
	ql, err := quic.ListenEarly(udp, tlsConf, &quic.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln := &listener{EarlyListener: ql}
	var requests int64
	mux := http.NewServeMux()
	mux.HandleFunc("/dns-query", forward(*backend, &requests))
	server := &http3.Server{Handler: mux}
	go server.ServeListener(ln)
	port := udp.LocalAddr().(*net.UDPAddr).Port
	if *h2 {
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		h2server := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
		go h2server.ServeTLS(tcp, "", "")
		fmt.Printf("port %d h2 %d\n", port, tcp.Addr().(*net.TCPAddr).Port)
	} else {
		fmt.Printf("port %d\n", port)
	}

	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		switch strings.TrimSpace(lines.Text()) {
		case "conns":
			ln.mu.Lock()
			fmt.Printf("%d\n", ln.total)
			ln.mu.Unlock()
		case "requests":
			fmt.Printf("%d\n", atomic.LoadInt64(&requests))
		case "goaway", "goaway0":
			zero := strings.TrimSpace(lines.Text()) == "goaway0"
			ln.each(func(c *conn) { c.goAway(zero) })
			fmt.Println("ok")
		case "close":
			ln.each(func(c *conn) { c.CloseWithError(0x100, "") })
			fmt.Println("ok")
		default:
			fmt.Println("unknown command")
		}
	}
	// stdin closed: the test is done with us.
	server.Close()
}
