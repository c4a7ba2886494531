//! The garbage collector's picture of the cluster: every watched object
//! by uid with its ownerReferences, deletion state and finalizers, and
//! for each owner uid the dependents pointing at it. What a change means
//! for the work queue (which uids to look at again) and what to do with
//! an object (pure, from what is known of its owners) are here.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Index of its resource in the collector's list of watched resources.
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn from_meta(resource: usize, meta: &ObjectMeta) -> Option<Node> {
        Some(Node {
            resource,
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            resource_version: meta.resource_version.clone(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }

    pub fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: waiting for its dependents.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has(FOREGROUND)
    }
}

#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The objects whose ownerReferences name `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .collect()
    }

    /// The dependents of `uid` that block its foreground deletion.
    pub fn blocking(&self, uid: &str) -> Vec<&Node> {
        self.dependents(uid)
            .into_iter()
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
            .collect()
    }

    fn unlink(&mut self, node: &Node) {
        for o in &node.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(&node.uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
    }

    /// `node` is as given now; the uids to look at again.
    pub fn apply(&mut self, node: Node) -> Vec<String> {
        let mut touched = vec![node.uid.clone()];
        touched.extend(node.owners.iter().map(|o| o.uid.clone()));
        if let Some(old) = self.nodes.get(&node.uid).cloned() {
            if old == node {
                return Vec::new();
            }
            touched.extend(old.owners.iter().map(|o| o.uid.clone()));
            if old.deleting != node.deleting || old.finalizers != node.finalizers {
                touched.extend(self.dependents(&node.uid).iter().map(|d| d.uid.clone()));
            }
            self.unlink(&old);
        } else {
            // Dependents seen before their owner arrived.
            touched.extend(self.dependents(&node.uid).iter().map(|d| d.uid.clone()));
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(node.uid.clone());
        }
        self.nodes.insert(node.uid.clone(), node);
        touched.sort();
        touched.dedup();
        touched
    }

    /// `uid` is gone; the uids to look at again (its owners, which may be
    /// waiting for it, and its dependents, now without it).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        self.unlink(&old);
        let mut touched: Vec<String> = old.owners.iter().map(|o| o.uid.clone()).collect();
        touched.extend(self.dependents(uid).iter().map(|d| d.uid.clone()));
        touched.sort();
        touched.dedup();
        touched
    }
}

/// What is known of one owner of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Exists (being deleted in the background or orphaning counts).
    Solid,
    /// Being deleted in the foreground.
    Waiting,
    /// No object of that uid exists.
    Absent,
}

/// What to do with an object, given its owners' states (kube's
/// attemptToDeleteItem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Drop the ownerReferences to these uids (the object stays, owned by
    /// its other, existing owners).
    DropOwners(Vec<String>),
    /// Delete the object with this propagation policy.
    Delete(&'static str),
}

pub fn verdict(node: &Node, owners: &[(String, Owner)], has_dependents: bool) -> Verdict {
    if owners.is_empty() || (node.deleting && !node.deleting_dependents()) {
        return Verdict::Keep;
    }
    let solid = owners.iter().any(|(_, s)| *s == Owner::Solid);
    let waiting = owners.iter().any(|(_, s)| *s == Owner::Waiting);
    if solid {
        let drop: Vec<String> = owners
            .iter()
            .filter(|(_, s)| *s != Owner::Solid)
            .map(|(u, _)| u.clone())
            .collect();
        return if drop.is_empty() {
            Verdict::Keep
        } else {
            Verdict::DropOwners(drop)
        };
    }
    if node.deleting {
        return Verdict::Keep;
    }
    if waiting && has_dependents {
        // Its owner waits for it: its own dependents go first.
        return Verdict::Delete("Foreground");
    }
    let policy = if node.has(ORPHAN) {
        "Orphan"
    } else if node.has(FOREGROUND) {
        "Foreground"
    } else {
        "Background"
    };
    Verdict::Delete(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("cm-{uid}"),
            uid: uid.into(),
            block_owner_deletion: Some(block),
            controller: None,
        }
    }

    fn node(uid: &str, owners: Vec<OwnerReference>) -> Node {
        Node {
            resource: 0,
            namespace: Some("ns".into()),
            name: format!("cm-{uid}"),
            uid: uid.into(),
            resource_version: None,
            owners,
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn the_graph_links_dependents_and_says_what_to_revisit() {
        let mut g = Graph::default();
        assert_eq!(g.apply(node("d1", vec![owner("o", true)])), ["d1", "o"]);
        g.apply(node("d2", vec![owner("o", false)]));
        let mut o = node("o", vec![]);
        assert_eq!(
            g.apply(o.clone()),
            ["d1", "d2", "o"],
            "dependents seen first"
        );
        assert_eq!(g.blocking("o").len(), 1);
        assert!(g.apply(o.clone()).is_empty(), "no change, nothing to do");
        o.deleting = true;
        o.finalizers = vec![FOREGROUND.into()];
        assert_eq!(g.apply(o), ["d1", "d2", "o"]);
        assert_eq!(g.remove("d1"), ["o"]);
        assert!(g.blocking("o").is_empty());
        assert_eq!(g.remove("o"), ["d2"]);
        assert_eq!(g.dependents("o").len(), 1, "d2 still names o");
    }

    #[test]
    fn verdicts_follow_kube() {
        let d = node("d", vec![owner("a", true), owner("b", true)]);
        use Owner::*;
        let v = |a, b, deps| verdict(&d, &[("a".into(), a), ("b".into(), b)], deps);
        assert_eq!(v(Solid, Solid, false), Verdict::Keep);
        assert_eq!(
            v(Solid, Absent, false),
            Verdict::DropOwners(vec!["b".into()])
        );
        assert_eq!(
            v(Waiting, Solid, false),
            Verdict::DropOwners(vec!["a".into()])
        );
        assert_eq!(v(Absent, Absent, false), Verdict::Delete("Background"));
        assert_eq!(v(Waiting, Absent, false), Verdict::Delete("Background"));
        assert_eq!(v(Waiting, Absent, true), Verdict::Delete("Foreground"));
        let mut orphaning = d.clone();
        orphaning.finalizers = vec![ORPHAN.into()];
        assert_eq!(
            verdict(&orphaning, &[("a".into(), Absent)], false),
            Verdict::Delete("Orphan")
        );
        let mut going = d.clone();
        going.deleting = true;
        assert_eq!(
            verdict(&going, &[("a".into(), Absent)], false),
            Verdict::Keep
        );
        assert_eq!(verdict(&node("x", vec![]), &[], false), Verdict::Keep);
    }
}
