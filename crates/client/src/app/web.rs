//! The app's calls to the server's HTTP API with the account's bearer token: profile,
//! schedules, reminders and reports. Every failure becomes an [`IpcError`] the UI can show.

use confab_proto::ipc::{IpcError, IpcErrorCode};
use confab_proto::{
    ApiError, Profile, ProfileUpdate, ReportFiled, ReportRequest, ScheduleRequest, Scheduled,
};
use serde::de::DeserializeOwned;

use super::err;
use crate::identity::AccountCallError;

/// The HTTP API of one server, as one signed-in account (or none).
#[derive(Clone)]
pub(super) struct Web {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
}

impl From<AccountCallError> for IpcError {
    fn from(e: AccountCallError) -> Self {
        match e {
            AccountCallError::Refused(api) => refused(api),
            AccountCallError::Http(e) => err(IpcErrorCode::Offline, e.to_string()),
        }
    }
}

fn refused(api: ApiError) -> IpcError {
    err(IpcErrorCode::Server(api.code), api.message)
}

/// Sends `request`; a failure is the server's `{code, message}` when it gave one.
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, IpcError> {
    let response = request
        .send()
        .await
        .map_err(|e| err(IpcErrorCode::Offline, e.to_string()))?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    Err(match response.json::<ApiError>().await {
        Ok(api) => refused(api),
        Err(_) => err(
            IpcErrorCode::Internal,
            format!("the server answered {status}"),
        ),
    })
}

/// [`send`], reading the answer's body.
async fn answer<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, IpcError> {
    send(request)
        .await?
        .json()
        .await
        .map_err(|e| err(IpcErrorCode::Internal, format!("the server's answer: {e}")))
}

/// [`send`] for calls whose success has no body.
async fn done(request: reqwest::RequestBuilder) -> Result<(), IpcError> {
    send(request).await.map(drop)
}

impl Web {
    fn get(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.get(format!("{}{path}", self.url));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Scheduled spaces of everyone on the server, soonest first.
    pub(super) async fn upcoming(&self) -> Result<Vec<Scheduled>, IpcError> {
        answer(self.get("/api/schedules", None)).await
    }

    /// The scheduled spaces the account asked to be reminded of.
    pub(super) async fn reminders(&self, token: &str) -> Result<Vec<Scheduled>, IpcError> {
        answer(self.get("/api/me/reminders", Some(token))).await
    }

    pub(super) async fn set_reminder(
        &self,
        token: &str,
        id: &str,
        on: bool,
    ) -> Result<(), IpcError> {
        let url = format!("{}/api/schedules/{id}/reminder", self.url);
        let r = if on {
            self.http.put(url)
        } else {
            self.http.delete(url)
        };
        done(r.bearer_auth(token)).await
    }

    pub(super) async fn schedule(
        &self,
        token: &str,
        req: &ScheduleRequest,
    ) -> Result<Scheduled, IpcError> {
        answer(
            self.http
                .post(format!("{}/api/schedules", self.url))
                .bearer_auth(token)
                .json(req),
        )
        .await
    }

    pub(super) async fn cancel(&self, token: &str, id: &str) -> Result<(), IpcError> {
        done(
            self.http
                .delete(format!("{}/api/schedules/{id}", self.url))
                .bearer_auth(token),
        )
        .await
    }

    pub(super) async fn report(&self, token: &str, req: &ReportRequest) -> Result<i64, IpcError> {
        let filed: ReportFiled = answer(
            self.http
                .post(format!("{}/api/reports", self.url))
                .bearer_auth(token)
                .json(req),
        )
        .await?;
        Ok(filed.id)
    }

    /// Anyone's public profile.
    pub(super) async fn profile(&self, handle: &str) -> Result<Profile, IpcError> {
        answer(self.get(&format!("/api/users/{handle}"), None)).await
    }

    /// Replaces the account's profile.
    pub(super) async fn update_profile(
        &self,
        token: &str,
        update: &ProfileUpdate,
    ) -> Result<Profile, IpcError> {
        answer(
            self.http
                .put(format!("{}/api/me", self.url))
                .bearer_auth(token)
                .json(update),
        )
        .await
    }

    /// Renames the account, keeping its bio and avatar.
    pub(super) async fn rename(
        &self,
        token: &str,
        display_name: &str,
    ) -> Result<Profile, IpcError> {
        let me: Profile = answer(self.get("/api/me", Some(token))).await?;
        let update = ProfileUpdate {
            display_name: display_name.to_owned(),
            bio: me.bio,
            avatar: me.avatar,
        };
        self.update_profile(token, &update).await
    }
}
