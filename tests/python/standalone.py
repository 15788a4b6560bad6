"""A standalone SMART launch with the official Python client (PyPI fhirclient 4.x), its
browser steps played by submitting the server's forms over HTTP; prints what it read as JSON.
Settings come from the environment (tests/app_launch/python.rs sets them)."""

import json
import os
import re
import sys
from urllib.parse import urljoin

import requests
from fhirclient import client
from fhirclient.models.patient import Patient

env = os.environ
smart = client.FHIRClient(settings={
    "app_id": "py-app",
    "api_base": env["FHIR_BASE"],
    "redirect_uri": "http://localhost:8000/callback",
    "scope": "launch/patient openid fhirUser patient/*.rs",
})
browser = requests.Session()


def csrf(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def redirected(response):
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return urljoin(response.url, response.headers["Location"])


flow = redirected(browser.get(smart.authorize_url, allow_redirects=False))
page = browser.get(flow)
done = browser.post(flow + "/signin", allow_redirects=False, data={
    "csrf": csrf(page.text), "email": env["EMAIL"], "password": env["PASSWORD"],
})
page = browser.get(redirected(done))
form = {"csrf": csrf(page.text), "decision": "allow"}
allowed = re.findall(r'name="allow" value="([^"]+)"', page.text)
back = browser.post(flow + "/consent", allow_redirects=False,
                    data=list(form.items()) + [("allow", a) for a in allowed])
smart.handle_callback(redirected(back))
patient = Patient.read(smart.patient_id, smart.server)
json.dump({"patient": smart.patient_id, "family": patient.name[0].family,
           "ready": smart.ready}, sys.stdout)
