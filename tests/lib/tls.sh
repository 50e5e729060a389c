# Throwaway certificates for TLS tests, made with openssl. Source it, then:
#   tls_ca DIR NAME                 DIR/NAME.crt and DIR/NAME.key: a CA
#   tls_cert DIR CA NAME SAN        DIR/NAME.crt and DIR/NAME.key: a server certificate for SAN
#                                   (e.g. DNS:localhost,IP:127.0.0.1) signed by DIR/CA
# RSA 2048, valid from now for 30 days; nothing is kept after the test.

tls_ca() {
    local dir=$1 name=$2
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$name" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/$name.key" -out "$dir/$name.crt" 2>"$dir/$name.openssl.log" \
        || { cat "$dir/$name.openssl.log" >&2; return 1; }
}

tls_cert() {
    local dir=$1 ca=$2 name=$3 san=$4
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$dir/$name.key" -out "$dir/$name.csr" \
        2>"$dir/$name.openssl.log" || { cat "$dir/$name.openssl.log" >&2; return 1; }
    printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
        "$san" >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -CAcreateserial -days 30 \
        -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>>"$dir/$name.openssl.log" \
        || { cat "$dir/$name.openssl.log" >&2; return 1; }
}
