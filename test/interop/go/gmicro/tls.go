package gmicro

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"

	"go-micro.dev/v4/transport"
)

// tlsFlags are the TLS options of echo-server and echo-client:
//
//	-tls-cert F -tls-key F  the server's certificate and key (PEM)
//	-tls-ca F               the CA the client trusts (PEM); without it, the system's
//	-tls                    TLS on with neither (a client that trusts the system's CAs)
//
// Any of them gives the program go-micro's HTTP transport with transport.TLSConfig, on both the
// client and the server side, as an application securing its service would.
type tlsFlags struct {
	on            *bool
	cert, key, ca *string
}

func addTLSFlags(fs *flag.FlagSet) *tlsFlags {
	return &tlsFlags{
		on:   fs.Bool("tls", false, "TLS, trusting the system's CAs"),
		cert: fs.String("tls-cert", "", "TLS certificate (PEM) the server presents"),
		key:  fs.String("tls-key", "", "its private key (PEM)"),
		ca:   fs.String("tls-ca", "", "CA certificates (PEM) the client trusts"),
	}
}

// transport is the HTTP transport over TLS, or nil when no TLS flag is set.
func (f *tlsFlags) transport() (transport.Transport, error) {
	if !*f.on && *f.cert == "" && *f.ca == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if *f.cert != "" {
		cert, err := tls.LoadX509KeyPair(*f.cert, *f.key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if *f.ca != "" {
		pem, err := os.ReadFile(*f.ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", *f.ca)
		}
	}
	return transport.NewHTTPTransport(transport.TLSConfig(cfg)), nil
}
