import pytest

from spectacles.rest import Route, route_key_for_path


def test_route_formats_path_and_major_parameter() -> None:
    route = Route("post", "/channels/{channel_id}/messages", channel_id=123)
    assert route.method == "POST"
    assert route.path == "/channels/123/messages"
    assert route.bucket_route == "POST /channels/{channel_id}/messages"
    assert route.major == "123"
    assert route.uses_global_limit


def test_route_major_is_guild_for_member_routes_not_user() -> None:
    route = Route("PATCH", "/guilds/{guild_id}/members/{user_id}", guild_id=1, user_id=2)
    assert route.major == "1"
    assert route.path == "/guilds/1/members/2"


def test_route_quotes_parameters() -> None:
    route = Route("PUT", "/x/{emoji}", emoji="a/b c")
    assert route.path == "/x/a%2Fb%20c"


def test_route_missing_parameter_names_it() -> None:
    with pytest.raises(ValueError, match="channel_id"):
        Route("GET", "/channels/{channel_id}")


def test_route_without_major_parameter() -> None:
    assert Route("GET", "/users/@me").major == ""


def test_interactions_are_exempt_from_global_limit() -> None:
    route = Route("POST", "/interactions/{id}/{token}/callback", id=1, token="t")
    assert not route.uses_global_limit


@pytest.mark.parametrize(
    ("path", "route", "major"),
    [
        ("/channels/12/messages", "POST /channels/{channels}/messages", "12"),
        ("/channels/12/messages/34", "POST /channels/{channels}/messages/{id}", "12"),
        ("/guilds/5/members/6", "POST /guilds/{guilds}/members/{id}", "5"),
        ("/users/@me", "POST /users/@me", ""),
        ("/gateway/bot", "POST /gateway/bot", ""),
        (
            "/channels/1/messages/2/reactions/%F0%9F%91%8D/@me",
            "POST /channels/{channels}/messages/{id}/reactions/{id}/@me",
            "1",
        ),
    ],
)
def test_route_key_for_path_keeps_only_the_major_id(path: str, route: str, major: str) -> None:
    bucket_route, got_major, uses_global = route_key_for_path("post", path)
    assert (bucket_route, got_major, uses_global) == (route, major, True)


def test_route_key_for_path_interactions_not_global() -> None:
    bucket_route, major, uses_global = route_key_for_path("POST", "/interactions/1/tok/callback")
    assert bucket_route == "POST /interactions/{interaction}/{interaction}/callback"
    assert major == ""
    assert not uses_global


def test_token_webhooks_are_exempt_from_global_limit() -> None:
    bucket_route, major, uses_global = route_key_for_path("POST", "/webhooks/9/tok/messages/3")
    assert bucket_route == "POST /webhooks/{webhooks}/{webhook_token}/messages/{id}"
    assert (major, uses_global) == ("9:tok", False)
    original = Route(
        "PATCH",
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
        webhook_id=9,
        webhook_token="tok",
    )
    assert not original.uses_global_limit
    # Without a token the webhook routes need the bot's authorisation: they count.
    assert route_key_for_path("GET", "/webhooks/9")[2]
    assert Route("GET", "/channels/{channel_id}/webhooks", channel_id=1).uses_global_limit


def test_messages_of_one_channel_share_a_bucket_route() -> None:
    first = route_key_for_path("DELETE", "/channels/1/messages/100")
    second = route_key_for_path("DELETE", "/channels/1/messages/200")
    other_channel = route_key_for_path("DELETE", "/channels/2/messages/100")
    assert first == second
    assert first[0] == other_channel[0] and first[1] != other_channel[1]
