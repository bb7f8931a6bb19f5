//! What the image commands need of containers: images are shared by every
//! namespace, so "in use" means by a container of any namespace.

use berth_image::platform::Platform;
use berth_image::store::ImageStore;

use super::ApiError;
use crate::namespace::Namespace;
use crate::records::ContainerStore;

/// An image record's name as docker's REPOSITORY and TAG (`<none>` for a
/// digest reference or a name without a tag).
pub fn split_name(name: &str) -> (String, String) {
    if let Some((repo, _)) = name.split_once('@') {
        return (repo.to_string(), "<none>".to_string());
    }
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (name[..i].to_string(), name[i + 1..].to_string()),
        _ => (name.to_string(), "<none>".to_string()),
    }
}

/// Whether a record named `name` is dangling (has no tag).
pub fn is_dangling(name: &str) -> bool {
    split_name(name).1 == "<none>"
}

/// The names of the containers (of every namespace: images are shared)
/// made from the image `name` in `store`, as `NAME` for `namespace`'s own
/// and `NAMESPACE/NAME` for another's; none when there is no such image.
/// It needs only the image store (no engine), so image commands stay
/// light.
pub fn containers_using_image(
    store: &ImageStore,
    namespace: &Namespace,
    name: &str,
) -> Result<Vec<String>, ApiError> {
    let Ok(img) = store.get(name, &Platform::host()) else {
        return Ok(Vec::new());
    };
    let id = img.id().to_string();
    let records = ContainerStore::in_namespace(store.meta().clone(), namespace.clone());
    Ok(records
        .list_all()?
        .into_iter()
        .filter(|r| r.image_id == id)
        .map(|r| {
            if r.namespace == namespace.as_str() {
                r.name
            } else {
                format!("{}/{}", r.namespace, r.name)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dangling() {
        assert_eq!(
            split_name("docker.io/library/busybox:latest"),
            ("docker.io/library/busybox".into(), "latest".into())
        );
        assert_eq!(
            split_name("localhost:5000/a"),
            ("localhost:5000/a".into(), "<none>".into())
        );
        assert_eq!(split_name("a/b@sha256:00"), ("a/b".into(), "<none>".into()));
        assert!(is_dangling("a/b@sha256:00"));
        assert!(!is_dangling("a:1"));
    }
}
