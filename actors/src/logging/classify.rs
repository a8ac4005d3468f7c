//! The node's bounce classifier: the shipped rules until the policy configures its own
//! (`kumo.configure_bounce_classifier`), applied to every Bounce and TransientFailure record as
//! it is logged. Results are cached by response line: a busy node sees the same few responses
//! over and over (a provider's throttling text), and a RegexSet over every rule is the costly part.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use crate::model::Response;
use crate::model::bounce_classifier::BounceClassifier;

/// Distinct response lines remembered before the cache starts over.
const CACHE_LINES: usize = 4096;

struct Current {
    classifier: Arc<BounceClassifier>,
    cache: Mutex<HashMap<String, Arc<str>>>,
}

static CURRENT: LazyLock<RwLock<Arc<Current>>> = LazyLock::new(|| {
    RwLock::new(Arc::new(Current {
        classifier: Arc::new(BounceClassifier::default_rules()),
        cache: Mutex::default(),
    }))
});

/// Replace the classifier (and forget what the old one decided).
pub fn install(classifier: BounceClassifier) {
    let next = Arc::new(Current { classifier: Arc::new(classifier), cache: Mutex::default() });
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = next;
}

pub fn classify(response: &Response) -> Arc<str> {
    let current = CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone();
    let line = response.to_single_line();
    let cache = current.cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(class) = cache.get(&line) {
        return class.clone();
    }
    drop(cache);
    let class = current.classifier.classify_line(&line);
    let mut cache = current.cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= CACHE_LINES {
        cache.clear();
    }
    cache.insert(line, class.clone());
    class
}
