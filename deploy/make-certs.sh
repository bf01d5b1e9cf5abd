#!/usr/bin/env bash
# Makes a cluster CA and node certificates for Kai's TLS with the openssl CLI.
#
#   deploy/make-certs.sh DIR NODE...
#
# DIR/ca.pem, DIR/ca.key   the cluster CA (ECDSA P-256, 10 years); made once, reused when DIR
#                          already holds one, so nodes can be added later
# DIR/NODE.pem, NODE.key   NODE's certificate (825 days) signed by the CA, for the host name or
#                          IP address NODE plus localhost and 127.0.0.1, usable as a server
#                          (memcache port, accepting peers) and as a client (dialling peers)
#
# A node uses NODE.pem/NODE.key as peer_tls_cert/peer_tls_key (and tls_cert/tls_key), and ca.pem
# as peer_tls_ca. Peers check that a node's certificate names the host they dial (the host part
# of its `advertise` address). Keep ca.key offline; it only signs certificates.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
dir="$1"
shift
mkdir -p "$dir"
cd "$dir"
umask 077
if [ ! -f ca.pem ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
  openssl req -x509 -new -key ca.key -subj "/CN=Kai cluster CA" -days 3650 -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi
for node in "$@"; do
  if [[ "$node" =~ ^[0-9.]+$ || "$node" == *:* ]]; then san="IP:$node"; else san="DNS:$node"; fi
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$node.key"
  openssl req -new -key "$node.key" -subj "/CN=$node" -out "$node.csr"
  printf '%s\n' \
    "subjectAltName=$san,DNS:localhost,IP:127.0.0.1" \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" >"$node.ext"
  openssl x509 -req -in "$node.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$node.ext" -out "$node.pem" 2>/dev/null
  rm "$node.csr" "$node.ext"
done
# Certificates are public; keys stay readable by their owner only.
chmod 644 ca.pem "${@/%/.pem}"
echo "certificates in $PWD: ca.pem $(printf '%s.pem ' "$@")(keys: ca.key $(printf '%s.key ' "$@"))"
