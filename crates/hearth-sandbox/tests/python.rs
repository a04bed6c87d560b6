//! The positive side: the venv's scientific stack works inside the sandbox.

mod common;

use common::*;

#[test]
fn matplotlib_chart_comes_back_as_png() {
    let mut spec = py(
        "import numpy as np, pandas as pd, matplotlib.pyplot as plt\n\
         df = pd.DataFrame({'x': np.arange(10), 'y': np.arange(10) ** 2})\n\
         ax = df.plot(x='x', y='y')\n\
         plt.savefig('chart.png')\n\
         print('rows', len(df))",
    );
    spec.limits.memory_bytes = 1 << 30;
    spec.limits.wall_time = std::time::Duration::from_secs(60);
    let o = run(&sandbox(), &spec);
    assert!(o.success(), "{o:#?}");
    assert_eq!(o.stdout, "rows 10\n");
    assert!(!o.stderr.to_lowercase().contains("error"), "{}", o.stderr);
    let png = o.file("chart.png").expect("chart.png in outcome");
    assert!(png.data.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.size > 1000);
}

#[test]
fn stdin_and_input_folder_reach_the_program() {
    let input = tempfile::tempdir().unwrap();
    std::fs::write(input.path().join("data.csv"), "a,b\n1,2\n3,4\n").unwrap();
    let mut spec = py("import sys, pandas as pd\n\
         df = pd.read_csv('/input/data.csv')\n\
         print(df['b'].sum(), sys.stdin.read().strip())");
    spec.input = Some(input.path().to_owned());
    spec.stdin = b"from stdin\n".to_vec();
    let o = run(&sandbox(), &spec);
    assert!(o.success(), "{o:#?}");
    assert_eq!(o.stdout, "6 from stdin\n");
}

#[test]
fn large_stdin_and_nested_output_folders() {
    let mut spec = py("import sys, os\n\
         data = sys.stdin.buffer.read()\n\
         os.makedirs('/output/a/b', exist_ok=True)\n\
         open('/output/a/b/n.txt', 'w').write(str(len(data)))");
    spec.stdin = vec![b'q'; 3 << 20];
    let o = run(&sandbox(), &spec);
    assert!(o.success(), "{o:#?}");
    assert_eq!(
        o.file("a/b/n.txt").unwrap().data,
        (3u64 << 20).to_string().as_bytes()
    );
}

/// With `output_dir`, /output's files are copied to disk as they are read back
/// (nothing of them in `data`), nested folders kept, and a symlink not followed.
#[test]
fn output_files_copied_into_a_host_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = py("import os\n\
         os.makedirs('/output/a/b', exist_ok=True)\n\
         open('/output/a/b/small.txt', 'w').write('hello')\n\
         open('/output/big.bin', 'wb').write(b'z' * (3 << 20))\n\
         os.symlink('/etc/passwd', '/output/link')");
    spec.output_dir = Some(dir.path().to_owned());
    let o = run(&sandbox(), &spec);
    assert!(o.success(), "{o:#?}");
    let names: Vec<(&str, u64, bool)> = o
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size, f.truncated))
        .collect();
    assert_eq!(
        names,
        [("a/b/small.txt", 5, false), ("big.bin", 3 << 20, false)]
    );
    assert!(o.files.iter().all(|f| f.data.is_empty()));
    assert!(o.files_truncated, "the symlink was left out");
    assert_eq!(
        std::fs::read(dir.path().join("a/b/small.txt")).unwrap(),
        b"hello"
    );
    let big = std::fs::read(dir.path().join("big.bin")).unwrap();
    assert!(big.len() == 3 << 20 && big.iter().all(|&b| b == b'z'));
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["a", "big.bin"]);
}

#[test]
fn missing_program_is_a_setup_error() {
    let spec = hearth_sandbox::Spec {
        argv: vec!["no-such-program".into()],
        ..Default::default()
    };
    let err = sandbox().run(&spec).unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
}
