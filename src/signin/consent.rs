//! Consent: the page's content for the browser that holds the flow, and
//! its answer. The form carries a CSRF token derived from the flow's
//! cookie, and the cookie is `SameSite=Lax`: another site can neither
//! read the token nor post the form with the cookie.

use super::{
    Signin, derive,
    flow::{Step, constant_time_eq},
    micros, now_us,
    store::{self},
};
use crate::store::Store;

/// What the consent page shows.
#[derive(Debug)]
pub struct ConsentView {
    pub flow_id: String,
    pub csrf: String,
    pub client_name: Option<String>,
    pub client_id: String,
    pub resource: String,
    pub resource_name: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl<S: Store> Signin<S> {
    /// What the consent page shows, for the browser that holds the flow.
    pub async fn consent_view(
        &self,
        flow_id: &str,
        cookie: Option<&str>,
    ) -> Result<ConsentView, Step> {
        let flow = self.bound_flow(flow_id, cookie).await?;
        if flow.subject.is_none() {
            return Err(Step::Show(
                "sign in first: this flow has no signed-in person".into(),
            ));
        }
        let client = self
            .registry
            .resolve(&self.db, &flow.client_id)
            .await
            .map_err(|err| Step::Show(err.to_string()))?;
        let resource_name = self
            .resources
            .get()
            .get(&flow.resource)
            .map_or_else(|| flow.resource.clone(), |r| r.name.clone());
        Ok(ConsentView {
            csrf: derive("csrf", cookie.unwrap_or_default(), &flow.flow_id),
            flow_id: flow.flow_id,
            client_name: client.name.clone(),
            client_id: flow.client_id,
            resource: flow.resource,
            resource_name,
            scopes: flow.scopes,
        })
    }

    /// The consent form's answer.
    pub async fn decide(
        &self,
        flow_id: &str,
        csrf: &str,
        cookie: Option<&str>,
        decision: Decision,
    ) -> Step {
        let flow = match self.bound_flow(flow_id, cookie).await {
            Ok(flow) => flow,
            Err(step) => return step,
        };
        let expected = derive("csrf", cookie.unwrap_or_default(), &flow.flow_id);
        if !constant_time_eq(csrf.as_bytes(), expected.as_bytes()) {
            return Step::Show("csrf: the form is not the one this server showed".into());
        }
        let Some(subject) = flow.subject.clone() else {
            return Step::Show("sign in first: this flow has no signed-in person".into());
        };
        match decision {
            Decision::Deny => match store::take_flow(&self.db, &flow.flow_id).await {
                Ok(true) => self.refused(&flow),
                _ => Step::Show("this sign-in was already completed".into()),
            },
            Decision::Approve => {
                if !self.consent_ttl.is_zero() {
                    let until = now_us() + micros(self.consent_ttl);
                    if let Err(err) = store::remember_consent(
                        &self.db,
                        &subject,
                        &flow.client_id,
                        &flow.resource,
                        &flow.scopes,
                        until,
                    )
                    .await
                    {
                        tracing::warn!(error = %err, "remembering consent failed");
                    }
                }
                self.finish(flow).await
            }
        }
    }
}
