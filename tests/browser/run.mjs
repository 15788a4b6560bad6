// Drives one SMART App Launch in headless Chromium: the app's launch page, the server's
// sign-in, patient picker and consent pages, then the app, whose result is printed as JSON.
// Settings come from the environment (tests/app_launch/browser.rs sets them).
import { chromium } from "playwright-core";

const env = process.env;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ locale: env.LOCALE || "en-US" });
  page.setDefaultTimeout(30000);
  let n = 0;
  const shot = (name) =>
    page.screenshot({ path: `${env.SCREENSHOTS}/${env.RUN}-${++n}-${name}.png`, fullPage: true });
  const submit = async (selector) => {
    await Promise.all([page.waitForNavigation(), page.click(selector)]);
  };

  await page.goto(env.LAUNCH_URL);
  await page.waitForSelector("input[name=password]");
  await shot("sign-in");
  await page.fill("#email", env.EMAIL);
  await page.fill("#password", env.PASSWORD);
  await submit("form button[type=submit]");
  if (await page.$("input[name=q]")) {
    await shot("picker");
    await page.fill("#q", env.SEARCH);
    await submit("form[role=search] button");
    await shot("picker-found");
    await submit("ul.patients button");
  }
  await page.waitForSelector("button[value=allow]");
  for (const v of (env.UNTICK || "").split(",").filter(Boolean)) {
    await page.uncheck(`input[name=allow][value="${v}"]`);
  }
  await shot("consent");
  await page.click("button[value=allow]");
  await page.waitForFunction(() => window.result !== undefined);
  await shot("app");
  console.log(JSON.stringify(await page.evaluate(() => window.result)));
} finally {
  await browser.close();
}
