use super::*;

fn known() -> Known {
    Known {
        connectors: ["whatsapp".to_string(), "slack".to_string()].into(),
        sources: ["wazzap-mx".to_string()].into(),
    }
}

#[test]
fn explore() {
    let dir = std::path::Path::new("/tmp/explore");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        match compile(&n, "stem", &text, &known()) {
            Ok(w) => println!(
                "=== {n}: OK {} steps={} {:?}",
                w.name,
                w.steps.len(),
                w.trigger.events
            ),
            Err(es) => {
                println!("=== {n}:");
                for e in es {
                    println!("{e}");
                }
            }
        }
    }
}
