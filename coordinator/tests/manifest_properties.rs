//! Properties of manifest parsing and expansion over random manifests, written out in TOML,
//! YAML and JSON by the small writers below (independent of the parser under test).

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};
use wax_coordinator::manifest::{Manifest, ManifestErrors, ManifestFormat, expand, parse};

// ---------------------------------------------------------------------------------------------
// A format-neutral document and its three renderings.

#[derive(Debug, Clone, PartialEq)]
enum V {
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<V>),
    Table(Vec<(String, V)>),
}

impl V {
    fn json(&self) -> Value {
        match self {
            V::Int(i) => json!(i),
            V::Float(f) => json!(f),
            V::Str(s) => json!(s),
            V::List(items) => Value::Array(items.iter().map(V::json).collect()),
            V::Table(entries) => {
                Value::Object(entries.iter().map(|(k, v)| (k.clone(), v.json())).collect())
            }
        }
    }
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn flow(v: &V, toml: bool) -> String {
    match v {
        V::Int(i) => i.to_string(),
        V::Float(f) => format!("{f:?}"),
        V::Str(s) if !toml && is_plain(s) => s.clone(),
        V::Str(s) => quoted(s),
        V::List(items) => {
            let parts: Vec<String> = items.iter().map(|i| flow(i, toml)).collect();
            format!("[{}]", parts.join(", "))
        }
        V::Table(entries) => {
            let sep = if toml { " = " } else { ": " };
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}{sep}{}", key(k, toml), flow(v, toml)))
                .collect();
            if parts.is_empty() { "{}".into() } else { format!("{{ {} }}", parts.join(", ")) }
        }
    }
}

/// A YAML plain scalar that the core schema reads back as the same string.
fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_lowercase())
        && !matches!(s, "null" | "true" | "false")
}

fn key(k: &str, toml: bool) -> String {
    let bare = !k.is_empty()
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && k.as_bytes()[0].is_ascii_alphabetic();
    // A dotted key is nesting in TOML but a plain string in YAML.
    let yaml_plain = !toml && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'.');
    if bare || yaml_plain { k.to_owned() } else { quoted(k) }
}

/// Top-level sections: tables, or lists of tables.
type Doc = Vec<(String, V)>;

fn to_json(doc: &Doc) -> String {
    serde_json::to_string_pretty(&RawJson(V::Table(doc.clone()))).unwrap()
}

/// serde_json's map sorts keys; the text must keep the document's order, so write it here.
struct RawJson(V);

impl serde::Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match &self.0 {
            V::Table(entries) => {
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, &RawJson(v.clone()))?;
                }
                m.end()
            }
            V::List(items) => {
                let mut q = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    q.serialize_element(&RawJson(v.clone()))?;
                }
                q.end()
            }
            other => other.json().serialize(s),
        }
    }
}

fn to_toml(doc: &Doc) -> String {
    let mut out = String::from("# generated\n");
    for (name, section) in doc {
        match section {
            V::Table(entries) => {
                out += &format!("[{name}]\n");
                for (k, v) in entries {
                    out += &format!("{} = {}\n", key(k, true), flow(v, true));
                }
            }
            V::List(tables) => {
                for t in tables {
                    out += &format!("[[{name}]]\n");
                    if let V::Table(entries) = t {
                        for (k, v) in entries {
                            out += &format!("{} = {}\n", key(k, true), flow(v, true));
                        }
                    }
                }
            }
            _ => unreachable!("sections are tables or lists of tables"),
        }
        out += "\n";
    }
    out
}

fn to_yaml(doc: &Doc) -> String {
    let mut out = String::from("# generated\n");
    for (name, section) in doc {
        match section {
            V::Table(entries) if entries.is_empty() => out += &format!("{name}: {{}}\n"),
            V::Table(entries) => {
                out += &format!("{name}:\n");
                for (k, v) in entries {
                    out += &format!("  {}: {}\n", key(k, false), flow(v, false));
                }
            }
            V::List(tables) => {
                out += &format!("{name}:\n");
                for t in tables {
                    match t {
                        V::Table(entries) if !entries.is_empty() => {
                            for (i, (k, v)) in entries.iter().enumerate() {
                                let lead = if i == 0 { "  - " } else { "    " };
                                out += &format!("{lead}{}: {}\n", key(k, false), flow(v, false));
                            }
                        }
                        other => out += &format!("  - {}\n", flow(other, false)),
                    }
                }
            }
            _ => unreachable!("sections are tables or lists of tables"),
        }
    }
    out
}

fn render(doc: &Doc, format: ManifestFormat) -> String {
    match format {
        ManifestFormat::Toml => to_toml(doc),
        ManifestFormat::Yaml => to_yaml(doc),
        ManifestFormat::Json => to_json(doc),
    }
}

const FORMATS: [ManifestFormat; 3] =
    [ManifestFormat::Toml, ManifestFormat::Yaml, ManifestFormat::Json];

// ---------------------------------------------------------------------------------------------
// Random sweeps.

/// Axis keys: aliases, and dotted paths none of which lies inside another.
const KEYS: &[&str] = &[
    "mapping",
    "model",
    "algorithm",
    "checkpoint",
    "seed",
    "rl.k0",
    "rl.k1",
    "env.k2",
    "x.y.k3",
    "k4",
    "k5",
    "k6",
    "k7",
];

/// The path a key stands for, written out independently of the crate's alias table.
fn path(key: &str) -> &str {
    match key {
        "mapping" => "env.mapping",
        "model" => "model.ref",
        "algorithm" => "rl.algorithm",
        other => other,
    }
}

#[derive(Debug, Clone)]
struct Sweep {
    axes: Vec<(String, Vec<V>)>,
    zip: Vec<Vec<(String, Vec<V>)>>,
    exclude: Vec<Vec<(String, V)>>,
    include: Vec<Vec<(String, V)>>,
    base: Vec<(String, V)>,
    priority: i64,
}

/// The i-th value of an axis: distinct for distinct i, of any JSON type.
fn value(i: usize) -> impl Strategy<Value = V> {
    let n = i as i64;
    prop_oneof![
        Just(V::Int(7 * n - 5)),
        Just(V::Float(n as f64 + 0.5)),
        "[a-zé \"\\\\\n]{0,3}".prop_map(move |s| V::Str(format!("{s}{i}"))),
        // No `x` before the run of them that tells the values apart.
        "[a-w]{1,3}".prop_map(move |s| V::Str(format!("{s}{}", "x".repeat(i + 1)))),
        Just(V::Table(vec![("n".into(), V::Int(n))])),
        Just(V::List(vec![V::Int(n), V::Str("é".into())])),
    ]
}

fn distinct_values(max: usize) -> impl Strategy<Value = Vec<V>> {
    (1..=max).prop_flat_map(|n| (0..n).map(value).collect::<Vec<_>>())
}

fn zip_group(width: usize) -> impl Strategy<Value = Vec<Vec<V>>> {
    (1..=3usize).prop_flat_map(move |len| {
        let first = (0..len).map(value).collect::<Vec<_>>();
        let small = prop_oneof![Just(V::Int(0)), Just(V::Int(1)), Just(V::Str("a".into()))];
        let rest = prop::collection::vec(prop::collection::vec(small, len), width - 1);
        (first, rest).prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
    })
}

fn sweep() -> impl Strategy<Value = Sweep> {
    let shape = (0..=4usize, prop::collection::vec(1..=3usize, 0..=2));
    (Just(KEYS.to_vec()).prop_shuffle(), shape)
        .prop_flat_map(|(keys, (n_axes, widths))| {
            let axes = prop::collection::vec(distinct_values(3), n_axes);
            let zips = widths.iter().map(|&w| zip_group(w)).collect::<Vec<_>>();
            let excludes = prop::collection::vec((any::<u64>(), any::<Index>()), 0..=3);
            let includes = prop::collection::vec((0..=1usize, any::<Index>()), 0..=2);
            let extra = prop::collection::vec(value(9), 0..=2);
            (Just(keys), axes, Just(widths), zips, excludes, includes, extra, -5i64..5)
        })
        .prop_map(|(keys, axes, widths, zips, excludes, includes, extra, priority)| {
            let mut keys = keys.into_iter().map(str::to_owned);
            let axes: Vec<(String, Vec<V>)> =
                axes.into_iter().map(|v| (keys.next().unwrap(), v)).collect();
            let zip: Vec<Vec<(String, Vec<V>)>> = widths
                .iter()
                .zip(zips)
                .map(|(&w, cols)| keys.by_ref().take(w).zip(cols).collect())
                .collect();
            let exclude = excludes
                .into_iter()
                .filter_map(|(bits, pick)| exclude_entry(&axes, &zip, bits, pick))
                .collect();
            let include = includes
                .into_iter()
                .enumerate()
                .map(|(i, (with_axis, pick))| {
                    let mut e = vec![("inc.n".to_owned(), V::Int(i as i64))];
                    if with_axis == 1 && !axes.is_empty() {
                        let (k, vs) = &axes[pick.index(axes.len())];
                        e.push((k.clone(), vs[pick.index(vs.len())].clone()));
                    }
                    e
                })
                .collect();
            let mut base = vec![
                ("rl".to_owned(), V::Table(vec![("steps".into(), V::Int(3))])),
                ("model".to_owned(), V::Table(vec![("size".into(), V::Str("tiny".into()))])),
            ];
            base.extend(extra.into_iter().enumerate().map(|(i, v)| (format!("b{i}"), v)));
            Sweep { axes, zip, exclude, include, base, priority }
        })
}

/// An exclude entry that can match: for each dimension whose bit is set, the values of one
/// choice of it (an axis value, or some columns of one zip row).
fn exclude_entry(
    axes: &[(String, Vec<V>)],
    zip: &[Vec<(String, Vec<V>)>],
    bits: u64,
    pick: Index,
) -> Option<Vec<(String, V)>> {
    let dims = axes.len() + zip.len();
    if dims == 0 {
        return None;
    }
    let mut entry = Vec::new();
    for d in 0..dims {
        let chosen = (bits >> d) & 1 == 1 || d == ((bits as usize) >> 8) % dims;
        if !chosen {
            continue;
        }
        let salt = (bits >> 16).wrapping_mul(d as u64 + 1) as usize;
        if d < axes.len() {
            let (k, vs) = &axes[d];
            entry.push((k.clone(), vs[(pick.index(vs.len()) + salt) % vs.len()].clone()));
        } else {
            let group = &zip[d - axes.len()];
            let row = (pick.index(group[0].1.len()) + salt) % group[0].1.len();
            for (c, (k, col)) in group.iter().enumerate() {
                if c == 0 || (bits >> (32 + c)) & 1 == 1 {
                    entry.push((k.clone(), col[row].clone()));
                }
            }
        }
    }
    Some(entry)
}

fn doc(s: &Sweep) -> Doc {
    let mut doc: Doc = vec![
        (
            "sweep".into(),
            V::Table(vec![
                ("name".into(), V::Str("prop".into())),
                ("priority".into(), V::Int(s.priority)),
            ]),
        ),
        ("limits".into(), V::Table(vec![("max_trials".into(), V::Int(100_000))])),
        (
            "resources".into(),
            V::Table(vec![(
                "rl".into(),
                V::Table(vec![
                    ("gpus".into(), V::Int(1)),
                    ("gpu_memory".into(), V::Str("40GiB".into())),
                ]),
            )]),
        ),
        ("base".into(), V::Table(s.base.clone())),
        (
            "axes".into(),
            V::Table(s.axes.iter().map(|(k, v)| (k.clone(), V::List(v.clone()))).collect()),
        ),
    ];
    let tables = |entries: &[Vec<(String, V)>]| {
        V::List(entries.iter().map(|e| V::Table(e.clone())).collect())
    };
    let zip: Vec<Vec<(String, V)>> = s
        .zip
        .iter()
        .map(|g| g.iter().map(|(k, v)| (k.clone(), V::List(v.clone()))).collect())
        .collect();
    for (name, entries) in [("zip", &zip), ("include", &s.include), ("exclude", &s.exclude)] {
        if !entries.is_empty() {
            doc.push((name.into(), tables(entries)));
        }
    }
    doc
}

/// The parameters of every trial of the product that no exclude entry matches, in order,
/// by brute force.
fn expected_params(s: &Sweep) -> Vec<Map<String, Value>> {
    let mut dims: Vec<Vec<Vec<(String, Value)>>> = s
        .axes
        .iter()
        .map(|(k, vs)| vs.iter().map(|v| vec![(path(k).to_owned(), v.json())]).collect())
        .collect();
    for g in &s.zip {
        let rows = (0..g[0].1.len())
            .map(|r| g.iter().map(|(k, col)| (path(k).to_owned(), col[r].json())).collect())
            .collect();
        dims.push(rows);
    }
    let mut combos: Vec<Map<String, Value>> = vec![Map::new()];
    for dim in &dims {
        combos = combos
            .iter()
            .flat_map(|c| {
                dim.iter().map(move |choice| {
                    let mut c = c.clone();
                    c.extend(choice.iter().cloned());
                    c
                })
            })
            .collect();
    }
    combos.retain(|params| {
        !s.exclude.iter().any(|e| e.iter().all(|(k, v)| params.get(path(k)) == Some(&v.json())))
    });
    combos
}

fn parse_as(text: &str, format: ManifestFormat) -> Result<Manifest, ManifestErrors> {
    parse(text, format, "prop")
}

fn sans_locations(mut m: Manifest) -> Manifest {
    m.locations = Default::default();
    m
}

fn configs_sorted(m: &Manifest) -> Vec<String> {
    let mut c: Vec<String> = expand(m).unwrap().iter().map(|t| t.config.to_string()).collect();
    c.sort();
    c
}

/// The text's syntax, judged by other parsers of each format.
fn syntax_ok(text: &str, format: ManifestFormat) -> bool {
    use saphyr::LoadableYamlNode;
    match format {
        ManifestFormat::Toml => text.parse::<toml::Table>().is_ok(),
        ManifestFormat::Yaml => saphyr::Yaml::load_from_str(text).is_ok(),
        ManifestFormat::Json => serde_json::from_str::<Value>(text).is_ok(),
    }
}

fn check_no_panic_and_located(text: &str, format: ManifestFormat) -> Result<(), TestCaseError> {
    match parse_as(text, format) {
        Ok(m) => {
            let _ = expand(&m);
        }
        Err(e) => {
            prop_assert!(!e.0.is_empty());
            if !syntax_ok(text, format) {
                prop_assert!(e.0.iter().any(|e| e.location.is_some()), "{e}");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn trial_count_and_order_match_brute_force(s in sweep()) {
        let m = parse_as(&to_toml(&doc(&s)), ManifestFormat::Toml)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = expected_params(&s);
        let product: usize = s.axes.iter().map(|(_, v)| v.len()).product::<usize>()
            * s.zip.iter().map(|g| g[0].1.len()).product::<usize>();
        prop_assert!(want.len() <= product);
        match expand(&m) {
            Err(e) => prop_assert!(want.is_empty() && s.include.is_empty(), "{e}"),
            Ok(trials) => {
                prop_assert_eq!(trials.len(), want.len() + s.include.len());
                for (i, t) in trials.iter().enumerate() {
                    prop_assert_eq!(t.index as usize, i);
                }
                let got: Vec<Map<String, Value>> = trials[..want.len()]
                    .iter()
                    .map(|t| t.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .collect();
                prop_assert_eq!(&got, &want);
                let mut configs: Vec<String> = trials.iter().map(|t| t.config.to_string()).collect();
                configs.sort();
                configs.dedup();
                prop_assert_eq!(configs.len(), trials.len(), "trials are distinct");
            }
        }
        // The count in the "too many" error is computed without enumerating: check it too.
        let total = want.len() + s.include.len();
        if total > 1 {
            let mut small = m.clone();
            small.limits.max_trials = 1;
            let err = expand(&small).unwrap_err().to_string();
            let needle = format!("expands to {total} trials");
            prop_assert!(err.contains(&needle), "{}", err);
        }
    }

    #[test]
    fn the_three_formats_parse_alike(s in sweep()) {
        let d = doc(&s);
        let mut parsed = FORMATS.iter().map(|&f| {
            parse_as(&render(&d, f), f).map(sans_locations).map_err(|e| format!("{f}: {e}"))
        });
        let toml = parsed.next().unwrap().map_err(TestCaseError::fail)?;
        for other in parsed {
            prop_assert_eq!(&other.map_err(TestCaseError::fail)?, &toml);
        }
    }

    #[test]
    fn reordering_keys_keeps_the_configs(s in sweep(), seed in any::<u64>(), f in 0..3usize) {
        let format = FORMATS[f];
        let d = doc(&s);
        let mut shuffled = d.clone();
        let mut rng = seed | 1;
        shuffle(&mut shuffled, &mut rng);
        for (_, section) in &mut shuffled {
            shuffle_tables(section, &mut rng);
        }
        let a = parse_as(&render(&d, format), format).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = parse_as(&render(&shuffled, format), format)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if expand(&a).is_ok() {
            prop_assert_eq!(configs_sorted(&a), configs_sorted(&b));
        } else {
            prop_assert!(expand(&b).is_err());
        }
    }

    #[test]
    fn deletions_never_panic_and_syntax_errors_are_located(
        s in sweep(), f in 0..3usize, at in any::<Index>(), len in 1..40usize,
    ) {
        let format = FORMATS[f];
        let text: Vec<char> = render(&doc(&s), format).chars().collect();
        let start = at.index(text.len());
        let end = (start + len).min(text.len());
        let cut: String = text[..start].iter().chain(&text[end..]).collect();
        check_no_panic_and_located(&cut, format)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), f in 0..3usize) {
        check_no_panic_and_located(&String::from_utf8_lossy(&bytes), FORMATS[f])?;
    }

    #[test]
    fn manifest_like_noise_never_panics(
        text in "[\\[\\]{}\":=,.#&*!|>\\- a-z0-9\n]{0,200}", f in 0..3usize,
    ) {
        check_no_panic_and_located(&text, FORMATS[f])?;
    }
}

/// Fisher–Yates with xorshift: the reordering only needs to vary, not to be uniform.
fn shuffle<T>(items: &mut [T], rng: &mut u64) {
    for i in (1..items.len()).rev() {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        items.swap(i, (*rng % (i as u64 + 1)) as usize);
    }
}

/// Reorders the keys of every table (lists keep their order: it means something).
fn shuffle_tables(v: &mut V, rng: &mut u64) {
    match v {
        V::Table(entries) => {
            shuffle(entries, rng);
            for (_, v) in entries {
                shuffle_tables(v, rng);
            }
        }
        V::List(items) => items.iter_mut().for_each(|v| shuffle_tables(v, rng)),
        _ => {}
    }
}
