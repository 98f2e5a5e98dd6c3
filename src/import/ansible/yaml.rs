//! Ansible's YAML inventory format.

use super::*;

/// Loads one YAML document, scalars left unresolved (so they can be
/// resolved as YAML 1.1 and quoted ones told apart); `None` if empty.
pub(super) fn load_yaml<'i>(
    text: &'i str,
    path: &Path,
) -> Result<Option<MarkedYaml<'i>>, ImportError> {
    let scan_error = |error: &ScanError| ImportError::Parse {
        path: path.to_owned(),
        line: error.marker().line(),
        column: Some(error.marker().col() + 1),
        message: format!("invalid YAML: {}", error.info()),
    };
    let mut loader: YamlLoader<'i, MarkedYaml<'i>> = YamlLoader::default();
    loader.early_parse(false);
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut loader, true).map_err(|e| scan_error(&e))?;
    if let Some(error) = loader.error() {
        return Err(scan_error(error));
    }
    let mut documents = loader.into_documents();
    if documents.len() > 1 {
        let start = documents[1].span.start;
        return Err(ImportError::Parse {
            path: path.to_owned(),
            line: start.line(),
            column: Some(start.col() + 1),
            message: "a second YAML document (after `---`): an inventory is one document"
                .to_owned(),
        });
    }
    Ok(documents.pop().filter(|doc| !is_null(doc)))
}

pub(super) fn is_null(node: &MarkedYaml) -> bool {
    match &node.data {
        YamlData::Representation(text, ScalarStyle::Plain, None) => {
            matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL")
        }
        YamlData::Value(Scalar::Null) | YamlData::BadValue => true,
        _ => false,
    }
}

pub(super) fn yaml_value(node: &MarkedYaml) -> Value {
    match &node.data {
        YamlData::Representation(text, style, tag) => scalar_value(text, *style, tag.as_deref()),
        YamlData::Value(scalar) => match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(n) => Value::Int(*n),
            Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
            Scalar::String(text) => Value::Str(text.to_string()),
        },
        YamlData::Sequence(_) => Value::Other("a list"),
        YamlData::Mapping(_) => Value::Other("a mapping"),
        YamlData::Tagged(tag, inner) => {
            if tag.handle == "!" && tag.suffix == "vault" {
                Value::Vault
            } else {
                yaml_value(inner)
            }
        }
        _ => Value::Other("an unreadable value"),
    }
}

/// A scalar as PyYAML (YAML 1.1) and Ansible's tags resolve it.
pub(super) fn scalar_value(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema() {
            let text_value = || Value::Str(text.to_owned());
            return match tag.suffix.as_str() {
                "int" => yaml11_int(text).unwrap_or_else(text_value),
                "float" => yaml11_float(text).map_or_else(text_value, Value::Float),
                "bool" | "null" => match yaml11_plain(text) {
                    value @ (Value::Bool(_) | Value::Null) => value,
                    _ => text_value(),
                },
                "binary" => Value::Other("binary data"),
                _ => text_value(),
            };
        }
        match tag.suffix.as_str() {
            "vault" => return Value::Vault,
            "unsafe" => return Value::Str(text.to_owned()),
            _ => {}
        }
    }
    if style != ScalarStyle::Plain {
        return Value::Str(text.to_owned());
    }
    yaml11_plain(text)
}

pub(super) fn yaml11_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    if let Some(number) = yaml11_int(text) {
        return number;
    }
    if let Some(number) = yaml11_float(text) {
        return Value::Float(number);
    }
    Value::Str(text.to_owned())
}

/// PyYAML's `int`: `0b1010`, `0755` (octal), `1_000`, `0x1F`, `1:30`.
pub(super) fn yaml11_int(text: &str) -> Option<Value> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(body) => (true, body),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let digits_in = |digits: &str, radix: u32| -> Option<i128> {
        let clean = digits.replace('_', "");
        if clean.is_empty() || !digits.chars().all(|c| c == '_' || c.is_digit(radix)) {
            return None;
        }
        i128::from_str_radix(&clean, radix).ok()
    };
    let number = if body == "0" {
        0
    } else if let Some(digits) = body.strip_prefix("0b") {
        digits_in(digits, 2)?
    } else if let Some(digits) = body.strip_prefix("0x") {
        digits_in(digits, 16)?
    } else if let Some(digits) = body.strip_prefix('0') {
        digits_in(digits, 8)?
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let mut total = digits_in(first, 10)?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let sixtieth: i128 = part.parse().ok()?;
            if sixtieth >= 60 {
                return None;
            }
            total = total.checked_mul(60)? + sixtieth;
        }
        total
    } else {
        if !body.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        digits_in(body, 10)?
    };
    Some(whole_number(if negative { -number } else { number }))
}

/// PyYAML's `float`: `1.5`, `1.`, `.5`, `6.8523015e+5`, `.inf`, `.nan`
/// (`1e3`, without a dot, is a string).
pub(super) fn yaml11_float(text: &str) -> Option<f64> {
    match text {
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.')?;
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit() || c == '_');
    let starts_right = if whole.is_empty() {
        fraction.starts_with(|c: char| c.is_ascii_digit())
    } else {
        whole.starts_with(|c: char| c.is_ascii_digit())
    };
    if !starts_right || !digits(whole) || !digits(fraction) {
        return None;
    }
    if let Some(exponent) = exponent {
        let power = exponent.strip_prefix(['-', '+'])?;
        if power.is_empty() || !power.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let clean = clean.replace(".e", ".0e").replace(".E", ".0E");
    let clean = if clean.ends_with('.') {
        format!("{clean}0")
    } else {
        clean
    };
    clean.parse().ok()
}

/// A mapping entry, with merge keys (`<<`) applied.
#[derive(Debug)]
pub(super) struct Entry<'a, 'i> {
    pub(super) key: String,
    pub(super) key_node: &'a MarkedYaml<'i>,
    pub(super) value: &'a MarkedYaml<'i>,
}

#[derive(Debug)]
pub(super) struct YamlFile<'p> {
    pub(super) path: &'p Path,
}

impl YamlFile<'_> {
    pub(super) fn error(&self, node: &MarkedYaml, message: String) -> ImportError {
        ImportError::Parse {
            path: self.path.to_owned(),
            line: node.span.start.line(),
            column: Some(node.span.start.col() + 1),
            message,
        }
    }

    /// The entries of a mapping, `None` if `node` is not one.
    pub(super) fn map<'a, 'i>(
        &self,
        node: &'a MarkedYaml<'i>,
    ) -> Result<Option<Vec<Entry<'a, 'i>>>, ImportError> {
        let mapping = match &node.data {
            YamlData::Mapping(mapping) => mapping,
            YamlData::Tagged(_, inner) => return self.map(inner),
            _ => return Ok(None),
        };
        let mut merged: IndexMap<String, Entry<'a, 'i>> = IndexMap::new();
        let mut explicit = Vec::new();
        for (key, value) in mapping {
            if matches!(&key.data, YamlData::Representation(text, ScalarStyle::Plain, None) if text == "<<")
            {
                let sources: Vec<&MarkedYaml> = match &value.data {
                    YamlData::Sequence(items) => items.iter().collect(),
                    _ => vec![value],
                };
                for source in sources {
                    let Some(entries) = self.map(source)? else {
                        return Err(self.error(
                            source,
                            "a `<<` merge takes a mapping (such as an alias `*defaults`) or a \
                             list of them"
                                .to_owned(),
                        ));
                    };
                    for entry in entries {
                        // Of several merged mappings, the first wins.
                        merged.entry(entry.key.clone()).or_insert(entry);
                    }
                }
                continue;
            }
            let Some(text) = key_text(key) else {
                return Err(self.error(
                    key,
                    "a key here must be a name, not a list or a mapping".to_owned(),
                ));
            };
            explicit.push(Entry {
                key: text,
                key_node: key,
                value,
            });
        }
        for entry in explicit {
            merged.insert(entry.key.clone(), entry);
        }
        Ok(Some(merged.into_values().collect()))
    }

    /// A mapping of variables (`None` or empty: none).
    pub(super) fn vars(&self, node: &MarkedYaml, what: &str) -> Result<Vars, ImportError> {
        if is_null(node) {
            return Ok(Vars::new());
        }
        let Some(entries) = self.map(node)? else {
            return Err(self.error(
                node,
                format!("{what} must be a mapping of variable names to values"),
            ));
        };
        Ok(entries
            .into_iter()
            .map(|entry| (entry.key, yaml_value(entry.value)))
            .collect())
    }

    pub(super) fn group(
        &self,
        inventory: &mut Inventory,
        name: &str,
        node: &MarkedYaml,
        parent: Option<&str>,
    ) -> Result<(), ImportError> {
        inventory.group(name);
        if let Some(parent) = parent {
            inventory.add_child(parent, name);
        }
        if is_null(node) {
            return Ok(());
        }
        let Some(entries) = self.map(node)? else {
            return Err(self.error(
                node,
                format!(
                    "group `{name}` must be a mapping of `hosts`, `vars` and `children`, or empty"
                ),
            ));
        };
        for entry in entries {
            match entry.key.as_str() {
                "hosts" => self.hosts(inventory, name, entry.value)?,
                "vars" => {
                    let vars = self.vars(entry.value, &format!("`vars` of group `{name}`"))?;
                    inventory.group(name).vars.extend(vars);
                }
                "children" => {
                    if is_null(entry.value) {
                        continue;
                    }
                    let Some(children) = self.map(entry.value)? else {
                        return Err(self.error(
                            entry.value,
                            format!(
                                "`children` of group `{name}` must be a mapping of group names \
                                 (each to its hosts, vars and children, or to nothing)"
                            ),
                        ));
                    };
                    for child in children {
                        self.group(inventory, &child.key, child.value, Some(name))?;
                    }
                }
                other => inventory.notes.push(format!(
                    "{}:{}: group `{name}`: `{other}` skipped (a group has hosts, vars and \
                     children only; Ansible skips it too)",
                    file_label(self.path),
                    entry.key_node.span.start.line()
                )),
            }
        }
        Ok(())
    }

    pub(super) fn hosts(
        &self,
        inventory: &mut Inventory,
        group: &str,
        node: &MarkedYaml,
    ) -> Result<(), ImportError> {
        if is_null(node) {
            return Ok(());
        }
        let Some(hosts) = self.map(node)? else {
            return Err(self.error(
                node,
                format!(
                    "`hosts` of group `{group}` must be a mapping of host names, each to its \
                     variables or to nothing (`web1:`), not a list"
                ),
            ));
        };
        for host in hosts {
            let (names, port) =
                host_pattern(&host.key).map_err(|message| self.error(host.key_node, message))?;
            let mut vars = Vars::new();
            if let Some(port) = port {
                vars.insert("ansible_port".to_owned(), Value::Int(port));
            }
            vars.extend(self.vars(host.value, &format!("host `{}`", host.key))?);
            for name in names {
                inventory.add_host(&name, group, &vars);
            }
        }
        Ok(())
    }
}

pub(super) fn key_text(node: &MarkedYaml) -> Option<String> {
    match &node.data {
        YamlData::Representation(text, ..) => Some(text.to_string()),
        YamlData::Value(scalar) => Some(match scalar {
            Scalar::Null => "null".to_owned(),
            Scalar::Boolean(b) => b.to_string(),
            Scalar::Integer(n) => n.to_string(),
            Scalar::FloatingPoint(f) => f.to_string(),
            Scalar::String(text) => text.to_string(),
        }),
        YamlData::Tagged(_, inner) => key_text(inner),
        _ => None,
    }
}

pub(super) fn parse_yaml(text: &str, path: &Path) -> Result<Inventory, ImportError> {
    let file = YamlFile { path };
    let mut inventory = Inventory::default();
    let Some(root) = load_yaml(text, path)? else {
        return Ok(inventory);
    };
    let Some(entries) = file.map(&root)? else {
        return Err(file.error(
            &root,
            "an Ansible YAML inventory is a mapping of group names, usually `all:` with its \
             `hosts`, `vars` and `children`"
                .to_owned(),
        ));
    };
    let rerun = format!(
        "run `ansible-inventory -i {} --list --yaml --export > static.yml` and import static.yml",
        path.display()
    );
    if entries.iter().any(|entry| entry.key == "plugin") {
        return Err(ImportError::Unsupported {
            path: path.to_owned(),
            message: format!(
                "configures an inventory plugin (`plugin:`), it does not list hosts: {rerun}"
            ),
        });
    }
    if entries.iter().any(|entry| entry.key == "_meta") {
        return Err(ImportError::Unsupported {
            path: path.to_owned(),
            message: format!(
                "is the JSON output of an inventory script or of `ansible-inventory --list`: \
                 {rerun}"
            ),
        });
    }
    for entry in entries {
        file.group(&mut inventory, &entry.key, entry.value, None)?;
    }
    Ok(inventory)
}
