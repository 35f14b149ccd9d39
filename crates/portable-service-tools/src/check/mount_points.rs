//! The mount points an image needs to run read-only: what systemd mounts over in every
//! service's namespace, and each attached unit's own directories (`StateDirectory=`, ...),
//! which systemd can't make in an image it can't write.

use super::extensions::Layers;
use super::report::{Finding, Report, Unit};
use super::tree::{Image, Node, Resolved, View};
use portable_service_rules::mount_points::{self, HIDDEN_BELOW, MOUNT_POINT_FILES};
use std::path::Path;

/// The mount points step: each one missing, in the base for every service and where each unit
/// sees them for its own, and an error for each.
pub(super) fn check_mount_points(r: &mut Report, layers: &Layers, units: &[(Unit, &Image)]) {
    for dir in HIDDEN_BELOW {
        match View::new(layers.base).resolve(Path::new(dir)) {
            Resolved::Found(_, Node::Dir) => {}
            _ => r.missing_mount_points.push(format!("/{dir}")),
        }
    }
    for file in MOUNT_POINT_FILES {
        if View::new(layers.base).node(Path::new(file)).is_none() {
            r.missing_mount_points.push(format!("/{file}"));
        }
    }
    for (unit, image) in units {
        let view = layers.seen_from(image);
        for dir in mount_points::unit_directories(unit.content.as_bytes()) {
            if !matches!(
                view.resolve(dir.as_std_path()),
                Resolved::Found(_, Node::Dir)
            ) {
                r.missing_mount_points
                    .push(format!("/{dir} (for {})", unit.name));
            }
        }
    }
    for m in r.missing_mount_points.clone() {
        r.error(Finding::runs(format!(
            "mount point {m} is missing: on a read-only image the unit fails with 226/NAMESPACE"
        )));
    }
}
