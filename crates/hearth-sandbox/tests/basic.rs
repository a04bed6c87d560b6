//! The sandbox runs a program and returns what it did.

mod common;

use common::*;

#[test]
fn hello() {
    let sb = sandbox();
    let o = run_py(&sb, "import sys, os\nprint('hello', os.getuid(), os.getpid())\nprint('err', file=sys.stderr)\nopen('/output/a.txt','w').write('hi')\nsys.exit(3)");
    eprintln!("{o:#?}");
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.stdout, "hello 1000 1\n");
    assert_eq!(o.stderr, "err\n");
    assert_eq!(o.file("a.txt").unwrap().data, b"hi");
}
