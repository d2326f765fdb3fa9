package com.amazonaws.services.lambda.runtime;

import java.util.Map;

/** Context sent by a mobile client (AWS Mobile SDK). */
public interface ClientContext {
    Client getClient();

    Map<String, String> getCustom();

    Map<String, String> getEnvironment();
}
