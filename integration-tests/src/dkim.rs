//! DKIM for tests: keys made with the `openssl` CLI at test time, and Python's dkimpy as an
//! independent verifier whose DNS lookups are answered from those keys (`cargo xtask test`
//! installs openssl, dkimpy and pynacl).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn openssl(args: &[&str]) {
    crate::requires::command("the DKIM tests (key generation)", "openssl", "openssl");
    let out = Command::new("openssl").args(args).output().expect("the openssl CLI runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A private key PEM and its public key (SPKI DER) in `dir`.
pub fn make_key(dir: &Path, name: &str, genpkey: &[&str]) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.der"));
    let p = private.to_str().unwrap();
    openssl(&[genpkey, &["-out", p]].concat());
    openssl(&["pkey", "-in", p, "-pubout", "-outform", "DER", "-out", public.to_str().unwrap()]);
    (private, public)
}

/// Verifies every DKIM-Signature of the message on stdin; prints one PASS/FAIL line per
/// signature. argv: pairs of `selector._domainkey.domain` and a public key file (SPKI DER).
const VERIFY: &str = r#"
import base64, sys, dkim
records = {}
for name, der_path in zip(sys.argv[1::2], sys.argv[2::2]):
    der = open(der_path, 'rb').read()
    if len(der) == 44:  # ed25519 SPKI: the record carries the bare 32-byte key (RFC 8463)
        records[name] = b'v=DKIM1; k=ed25519; p=' + base64.b64encode(der[-32:])
    else:
        records[name] = b'v=DKIM1; k=rsa; p=' + base64.b64encode(der)
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return records.get(name.rstrip('.'))
# Messages on stdin, each preceded by its length and a newline; one line of verdicts each.
data = sys.stdin.buffer.read()
while data:
    size, _, data = data.partition(b'\n')
    message, data = data[:int(size)], data[int(size):]
    d = dkim.DKIM(message)
    count = sum(1 for k, _ in d.headers if k.lower() == b'dkim-signature')
    verdicts = []
    for i in range(count):
        try:
            verdicts.append('PASS' if d.verify(idx=i, dnsfunc=dnsfunc) else 'FAIL')
        except dkim.ValidationError:  # a body hash mismatch is raised, not returned
            verdicts.append('FAIL')
    print(' '.join(verdicts))
"#;

/// The verdicts of one message's signatures, in header order.
pub fn dkimpy_verdicts(message: &str, records: &[(&str, &Path)]) -> Vec<String> {
    dkimpy_verdicts_each(&[message], records).remove(0)
}

/// [`dkimpy_verdicts`] for many messages in one Python process.
pub fn dkimpy_verdicts_each(messages: &[&str], records: &[(&str, &Path)]) -> Vec<Vec<String>> {
    crate::requires::python_module("the DKIM tests (dkimpy verifies signatures)", "dkim", "dkimpy");
    crate::requires::python_module("the DKIM tests (dkimpy's ed25519)", "nacl", "pynacl");
    let mut cmd = Command::new("python3");
    cmd.args(["-c", VERIFY]);
    for (name, der) in records {
        cmd.arg(name).arg(der);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = Vec::new();
    for m in messages {
        input.extend(format!("{}\n", m.len()).as_bytes());
        input.extend(m.as_bytes());
    }
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dkimpy failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}
