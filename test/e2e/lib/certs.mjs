// SPDX-License-Identifier: MIT
// Test certificates made with `openssl req` (and `openssl x509` to sign):
// a root CA, an intermediate CA, server certificates for 127.0.0.1 and a
// client certificate. EC P-256 keys keep it quick.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

function ossl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function key(dir, name) {
  ossl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
}

function signed(dir, name, cn, issuer, ext) {
  key(dir, name);
  ossl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`], dir);
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
  ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.pem`, '-CAkey', `${issuer}.key`,
    '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
}

export function makeCerts(dir) {
  fs.mkdirSync(dir, { recursive: true });
  key(dir, 'ca');
  ossl(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=stompgate test root', '-days', '2',
    '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', 'ca.pem'], dir);
  const server = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n';
  signed(dir, 'a', 'gateway-a', 'ca', server);
  signed(dir, 'b', 'gateway-b', 'ca', server);
  signed(dir, 'inter', 'stompgate test intermediate', 'ca',
    'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n');
  signed(dir, 'leaf', 'gateway-leaf', 'inter', server);
  signed(dir, 'client', 'client-1', 'ca', 'extendedKeyUsage=clientAuth\n');
  const p = (f) => path.join(dir, f);
  return {
    dir, ca: p('ca.pem'), a: [p('a.pem'), p('a.key')], b: [p('b.pem'), p('b.key')],
    inter: p('inter.pem'), leaf: [p('leaf.pem'), p('leaf.key')], client: [p('client.pem'), p('client.key')],
  };
}
