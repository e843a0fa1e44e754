#!/bin/sh
# Makes a throwaway PKI for the TLS tests with the openssl command, in DIR (created):
#   ca.pem, ca.key            the test CA (EC P-256, valid for 2 days)
#   server.pem, server.key    a server certificate the CA signed, for 127.0.0.1, ::1 and
#                             localhost (leaf only; the CA is not in the chain)
#   other-ca.pem              another CA, which signed nothing the tests serve
#   self.pem, self.key        a self-signed server certificate for the same names
#   make-test-ca.sh DIR
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name subject
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 2 -out "$1.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
san="subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"
ca ca "cmicro test CA"
ca other-ca "cmicro other test CA"
key server.key
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
printf '%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "$san" >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
    -days 2 -extfile server.ext -out server.pem 2>/dev/null
key self.key
openssl req -x509 -new -key self.key -subj "/CN=localhost" -days 2 -out self.pem -addext "$san"
rm -f server.csr server.ext
