#!/bin/sh
# Regenerates the test certificates (valid for 100 years): a CA, a server certificate for
# localhost and 127.0.0.1 signed by it, a client certificate signed by it, and a client
# certificate signed by another CA (which the server must refuse). Run from this directory.
set -eu
days=36500
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days $days -subj "/CN=servicelevel test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.crt

key server.key
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days $days \
  -extfile server.ext -out server.crt

key client.key
openssl req -new -key client.key -subj "/CN=crm" -out client.csr
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days $days \
  -extfile client.ext -out client.crt

key rogue-ca.key
openssl req -x509 -new -key rogue-ca.key -sha256 -days $days -subj "/CN=rogue CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
  -out rogue-ca.crt
key rogue.key
openssl req -new -key rogue.key -subj "/CN=rogue" -out rogue.csr
openssl x509 -req -in rogue.csr -CA rogue-ca.crt -CAkey rogue-ca.key -CAcreateserial -sha256 \
  -days $days -extfile client.ext -out rogue.crt

rm -f ./*.csr ./*.ext ./*.srl ca.key rogue-ca.key rogue-ca.crt
