//! A browser without JavaScript, for the sign-in pages: it keeps cookies, follows nothing by
//! itself (the tests look at every redirect), and reads the hidden fields of forms.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct Browser {
    http: reqwest::Client,
    cookies: Mutex<HashMap<String, String>>,
    language: Option<String>,
}

/// What came back.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<String> {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The value of the first input named `name`.
    pub fn field(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\" value=\""))?;
        let rest = &self.body[at + name.len() + 15..];
        Some(rest[..rest.find('"')?].replace("&amp;", "&"))
    }

    /// The values of every input named `name`.
    pub fn fields(&self, name: &str) -> Vec<String> {
        let pat = format!("name=\"{name}\" value=\"");
        self.body
            .match_indices(&pat)
            .map(|(i, _)| {
                let rest = &self.body[i + pat.len()..];
                rest[..rest.find('"').unwrap()].to_owned()
            })
            .collect()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser::speaking(None)
    }

    /// A browser whose Accept-Language is `language`.
    pub fn speaking(language: Option<&str>) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Mutex::default(),
            language: language.map(str::to_owned),
        }
    }

    fn cookie_header(&self) -> String {
        let c = self.cookies.lock().unwrap();
        c.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The Set-Cookie headers of the last answers, as received.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn forget_cookies(&self) {
        self.cookies.lock().unwrap().clear();
    }

    async fn done(&self, req: reqwest::RequestBuilder) -> Page {
        let mut req = req.header("cookie", self.cookie_header());
        if let Some(l) = &self.language {
            req = req.header("accept-language", l);
        }
        let res = req.send().await.expect("the server answers");
        let headers = res.headers().clone();
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let first = v.split(';').next().unwrap();
            let (k, val) = first.split_once('=').unwrap();
            let mut c = self.cookies.lock().unwrap();
            if v.contains("Max-Age=0") {
                c.remove(k);
            } else {
                c.insert(k.to_owned(), val.to_owned());
            }
        }
        Page {
            status: res.status().as_u16(),
            headers,
            body: res.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        self.done(self.http.get(url)).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.done(
            self.http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }
}
