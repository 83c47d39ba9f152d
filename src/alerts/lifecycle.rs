//! A unit's alert records: opening one (at most one per type), escalating, resolving. Every
//! change is also an event for the engine to announce, routed to the alert's own organization
//! and site.

use chrono::{DateTime, Utc};

use super::model::{
    new_alert_id, Alert, AlertEscalated, AlertResolved, AlertType, Event, Severity,
};
use super::unit::{Cx, Out, Track};

impl Track {
    pub(super) fn alert(
        &self,
        cx: &mut Cx,
        ty: AlertType,
        severity: Severity,
        message: String,
    ) -> Alert {
        let unit = &cx.book.unit;
        Alert {
            alert_id: new_alert_id(cx.now, cx.rng),
            unit_id: unit.id.clone(),
            site_id: unit.site.clone(),
            organization_id: unit.org.clone(),
            alert_type: ty,
            severity,
            message,
            value: None,
            threshold: None,
            threshold_violated: None,
            triggered_at: cx.now,
            escalation_level: 0,
            escalated_at: None,
            acknowledged_by: None,
            acknowledged_at: None,
            acknowledged_comment: None,
        }
    }

    /// Opens `alert` unless one of its type is already open for this unit.
    pub(super) fn trigger(&mut self, cx: &mut Cx, alert: Alert) {
        cx.changed = true;
        if self.alerts.iter().any(|a| a.alert_type == alert.alert_type) {
            return;
        }
        cx.out.push(Out {
            event: Event::Triggered((&alert).into()),
            org: alert.organization_id.clone(),
            site: alert.site_id.clone(),
        });
        self.alerts.push(alert);
    }

    pub(super) fn escalate(&mut self, cx: &mut Cx, ty: AlertType) {
        cx.changed = true;
        let Some(a) = self.alerts.iter_mut().find(|a| a.alert_type == ty) else {
            return;
        };
        a.severity = Severity::Critical;
        a.escalation_level += 1;
        a.escalated_at = Some(cx.now);
        cx.out.push(Out {
            event: Event::Escalated(AlertEscalated {
                alert_id: a.alert_id.clone(),
                unit_id: a.unit_id.clone(),
                severity: a.severity,
                escalation_level: a.escalation_level,
                escalated_at: cx.now,
            }),
            org: a.organization_id.clone(),
            site: a.site_id.clone(),
        });
    }

    pub(super) fn resolve(&mut self, cx: &mut Cx, ty: AlertType) {
        cx.changed = true;
        if let Some(i) = self.alerts.iter().position(|a| a.alert_type == ty) {
            let a = self.alerts.remove(i);
            cx.out.push(resolved(&a, cx.now));
        }
    }
}

pub(super) fn resolved(a: &Alert, now: DateTime<Utc>) -> Out {
    Out {
        event: Event::Resolved(AlertResolved {
            alert_id: a.alert_id.clone(),
            unit_id: a.unit_id.clone(),
            resolved_at: now,
        }),
        org: a.organization_id.clone(),
        site: a.site_id.clone(),
    }
}
