//! `[vars]` tables and `--var KEY=VALUE` overrides.

use crate::config::checker::Checker;
use crate::config::raw::RawVars;
use crate::model::template::{Vars, is_identifier};

pub fn resolve_vars(raw: Option<&RawVars>, checker: &mut Checker<'_>) -> Vars {
    let mut vars = Vars::new();
    for (name, value) in raw.into_iter().flatten() {
        if !is_identifier(name.get_ref()) {
            checker.error(
                name.span(),
                format!("`{}` cannot name a variable", name.get_ref()),
                "expected letters, digits, `_` or `-`, starting with a letter",
            );
            continue;
        }
        vars.insert(name.get_ref().clone(), value.get_ref().0.clone());
    }
    vars
}
