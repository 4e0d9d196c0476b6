package main

import (
	"flag"

	mm "github.com/methanemap/methanemap"
	"github.com/nats-io/nats.go"
)

// natsAuth holds the flags that authenticate to an existing NATS
// deployment and secure the connection.
type natsAuth struct {
	user, password, token, nkey, creds string
	tlsCA, tlsCert, tlsKey             string
}

func (a *natsAuth) flags(fs *flag.FlagSet) {
	fs.StringVar(&a.user, "nats-user", "", "NATS user (with --nats-password)")
	fs.StringVar(&a.password, "nats-password", "", "NATS password")
	fs.StringVar(&a.token, "nats-token", "", "NATS token")
	fs.StringVar(&a.nkey, "nats-nkey", "", "NKey seed file")
	fs.StringVar(&a.creds, "nats-creds", "", "NATS credentials file (JWT + seed)")
	fs.StringVar(&a.tlsCA, "nats-ca", "", "CA certificate for the NATS server's TLS")
	fs.StringVar(&a.tlsCert, "nats-cert", "", "client certificate for NATS TLS (with --nats-key)")
	fs.StringVar(&a.tlsKey, "nats-key", "", "client key for NATS TLS")
}

// options turns the flags into nats.Connect options.
func (a *natsAuth) options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.user != "" || a.password != "" {
		opts = append(opts, nats.UserInfo(a.user, a.password))
	}
	if a.token != "" {
		opts = append(opts, nats.Token(a.token))
	}
	if a.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(a.nkey)
		if err != nil {
			return nil, mm.Permanentf("--nats-nkey %s: %w", a.nkey, err)
		}
		opts = append(opts, o)
	}
	if a.creds != "" {
		opts = append(opts, nats.UserCredentials(a.creds))
	}
	if a.tlsCA != "" {
		opts = append(opts, nats.RootCAs(a.tlsCA))
	}
	if a.tlsCert != "" || a.tlsKey != "" {
		opts = append(opts, nats.ClientCert(a.tlsCert, a.tlsKey))
	}
	return opts, nil
}
