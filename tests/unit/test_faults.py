"""The openai backend against a local server that injects faults: 429 with Retry-After, 5xx, resets,
timeouts, malformed 200s, bytes trickled past the deadline, and a prompt that never succeeds. Nothing is lost,
the run goes on, and neither the API key nor a credential in the server's URL appears anywhere."""





def test_redact_url_masks_credentials_and_nothing_else():
    from selfalign.io.urls import redact_url

    for plain in ["http://127.0.0.1:8000/v1", "https://api.openai.com/v1?model=x&n=2#top", "localhost:8000/v1", "",
                  "http://[::1]:8000/v1", "https://host/v1?q=a%20b&empty"]:
        assert redact_url(plain) == plain
    assert redact_url("http://user:sk-1@host:8000/v1") == "http://user:***@host:8000/v1"
    assert redact_url("https://sk-1@host/v1") == "https://***@host/v1"
    assert redact_url("user:sk-1@host:8000/v1") == "user:***@host:8000/v1"
    assert redact_url("http://h/v1?api_key=sk-1&model=m&access_token=t&Secret=s&sig=x&password=p&auth=a") == (
        "http://h/v1?api_key=***&model=m&access_token=***&Secret=***&sig=***&password=***&auth=***")
    assert redact_url("http://u:p@h/v1?key=k#token=t") == "http://u:***@h/v1?key=***#token=***"
