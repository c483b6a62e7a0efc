// gotls: a stand-in for Ghostunnel in bench/run.sh, which cannot be built
// where Go modules cannot be fetched. It is what Ghostunnel's server mode
// does per connection, on the same TLS stack: Go's crypto/tls with a
// required client certificate verified against -cacert, an -allow-cn
// check, a TCP dial to -target and io.Copy both ways with half-close.
// Standard library only, so Debian's golang-go builds it offline. Not a
// product: no logging, no reload, no limits.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"io"
	"log"
	"net"
	"os"
)

func main() {
	listen := flag.String("listen", "", "HOST:PORT")
	target := flag.String("target", "", "HOST:PORT")
	certFile := flag.String("cert", "", "PEM certificate")
	keyFile := flag.String("key", "", "PEM key")
	caFile := flag.String("cacert", "", "PEM CA bundle")
	allowCN := flag.String("allow-cn", "", "allowed client CN")
	flag.Parse()

	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatal("no CA certificate in ", *caFile)
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) > 0 && chains[0][0].Subject.CommonName == *allowCN {
				return nil
			}
			return x509.CertificateInvalidError{Reason: x509.NotAuthorizedToSign}
		},
	}
	ln, err := tls.Listen("tcp", *listen, conf)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c.(*tls.Conn), *target)
	}
}

func serve(c *tls.Conn, target string) {
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return
	}
	t, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer t.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(t, c); t.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, t); c.CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}
