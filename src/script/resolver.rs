//! `import "name" as alias;` — where modules come from, in order:
//!
//! 1. the stdlib/ modules embedded in the binary (`chain`, `assert`, `topo`);
//! 2. the importing script's own directory (`name.rhai`);
//! 3. each directory of `KOKO_PATH` (colon-separated).
//!
//! A module is compiled and evaluated once per run and then shared.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared};

/// The stdlib, embedded at build time.
pub const STDLIB: &[(&str, &str)] = &[
    ("chain", include_str!("../../stdlib/chain.rhai")),
    ("assert", include_str!("../../stdlib/assert.rhai")),
    ("topo", include_str!("../../stdlib/topo.rhai")),
];

pub struct Resolver {
    script_dir: Option<PathBuf>,
    cache: RefCell<HashMap<String, Shared<Module>>>,
}

impl Resolver {
    pub fn new(script_dir: Option<PathBuf>) -> Resolver {
        Resolver {
            script_dir,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// The directories searched after the stdlib, in order.
    fn dirs(&self, importer: Option<&str>) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(dir) = importer.and_then(|s| Path::new(s).parent()) {
            if !dir.as_os_str().is_empty() {
                dirs.push(dir.to_path_buf());
            }
        }
        if let Some(dir) = &self.script_dir {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        if let Ok(path) = std::env::var("KOKO_PATH") {
            dirs.extend(path.split(':').filter(|d| !d.is_empty()).map(PathBuf::from));
        }
        dirs
    }

    /// Find a module's source: (origin label, text).
    fn find(&self, importer: Option<&str>, name: &str) -> Option<(String, String)> {
        if let Some((_, text)) = STDLIB.iter().find(|(n, _)| *n == name) {
            return Some((format!("stdlib/{name}.rhai"), text.to_string()));
        }
        let file = if name.ends_with(".rhai") {
            name.to_string()
        } else {
            format!("{name}.rhai")
        };
        for dir in self.dirs(importer) {
            let candidate = if Path::new(&file).is_absolute() {
                PathBuf::from(&file)
            } else {
                dir.join(&file)
            };
            if let Ok(text) = std::fs::read_to_string(&candidate) {
                return Some((candidate.display().to_string(), text));
            }
        }
        None
    }

    /// "no module 'x': looked in ..." as a catchable error. (Not Rhai's
    /// ErrorModuleNotFound: Rhai swallows that one to try other resolvers
    /// and replaces it with a bare "Module not found: x".)
    fn not_found(&self, importer: Option<&str>, name: &str, pos: Position) -> Box<EvalAltResult> {
        let stdlib: Vec<&str> = STDLIB.iter().map(|(n, _)| *n).collect();
        let mut places = vec![format!("the stdlib ({})", stdlib.join(", "))];
        places.extend(self.dirs(importer).iter().map(|d| {
            d.join(format!("{}.rhai", name.trim_end_matches(".rhai")))
                .display()
                .to_string()
        }));
        if std::env::var_os("KOKO_PATH").is_none() {
            places.push("KOKO_PATH (not set)".into());
        }
        let mut map = rhai::Map::new();
        map.insert("kind".into(), "module_not_found".into());
        map.insert(
            "message".into(),
            format!("no module '{name}': looked in {}", places.join(", ")).into(),
        );
        EvalAltResult::ErrorRuntime(map.into(), pos).into()
    }
}

impl rhai::ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(m) = self.cache.borrow().get(path) {
            return Ok(m.clone());
        }
        let (origin, text) = self
            .find(source, path)
            .ok_or_else(|| self.not_found(source, path, pos))?;
        let mut ast = engine.compile(&text).map_err(|e| {
            // The module's own line and caret, as for the main script.
            let mut map = rhai::Map::new();
            map.insert("kind".into(), "syntax".into());
            map.insert(
                "message".into(),
                format!(
                    "in module '{path}': {}",
                    super::format_parse_error(&origin, &text, &e)
                )
                .into(),
            );
            Box::new(EvalAltResult::ErrorRuntime(map.into(), pos))
        })?;
        ast.set_source(origin.clone());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(origin, e, pos)))?;
        let module: Shared<Module> = module.into();
        self.cache
            .borrow_mut()
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}
